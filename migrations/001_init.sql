-- Tally schema. Users, credentials, sessions, keys and tiers are written through; actor
-- state (quota counters) is written behind, fenced by each shard's epoch.

CREATE TABLE tiers (
  name        text PRIMARY KEY,
  limits      jsonb NOT NULL,
  fail_open   boolean NOT NULL DEFAULT false,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id             text PRIMARY KEY,
  email          text NOT NULL,
  name           text,
  tier           text NOT NULL REFERENCES tiers (name),
  password_hash  text NOT NULL,
  preferences    jsonb NOT NULL DEFAULT '{}'::jsonb,
  blocked        boolean NOT NULL DEFAULT false,
  overrides      jsonb NOT NULL DEFAULT '[]'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE sessions (
  id              text PRIMARY KEY,
  user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  device_name     text,
  device_type     text,
  ip              text,
  user_agent      text,
  created_at      timestamptz NOT NULL,
  expires_at      timestamptz NOT NULL,
  last_active_at  timestamptz NOT NULL,
  revoked_at      timestamptz
);
CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE api_keys (
  id            text PRIMARY KEY,
  user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  prefix        text NOT NULL,
  hash          text NOT NULL UNIQUE,
  name          text,
  scopes        text[] NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz,
  last_used_at  timestamptz,
  deleted_at    timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id) WHERE deleted_at IS NULL;

-- The fence: one row per shard with the epoch of its current owner.
CREATE TABLE shard_fence (
  shard       integer PRIMARY KEY CHECK (shard BETWEEN 0 AND 1023),
  epoch       bigint NOT NULL CHECK (epoch > 0),
  owner       text,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION shard_fence_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.epoch < OLD.epoch THEN
    RAISE EXCEPTION 'shard % epoch may not go back from % to %', NEW.shard, OLD.epoch, NEW.epoch USING ERRCODE = 'TF002';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER shard_fence_forward BEFORE UPDATE ON shard_fence
  FOR EACH ROW EXECUTE FUNCTION shard_fence_forward();

CREATE TABLE actor_state (
  entity_key  text PRIMARY KEY,
  shard       integer NOT NULL,
  epoch       bigint NOT NULL,
  state       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Refuses any actor_state write whose epoch is not its shard's current one, whoever sends
-- it. FOR SHARE makes a concurrent epoch bump wait for this write (and this write wait for
-- a bump in progress), so no write can slip in under an epoch that is being replaced.
CREATE FUNCTION actor_state_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  current_epoch bigint;
BEGIN
  SELECT epoch INTO current_epoch FROM shard_fence WHERE shard = NEW.shard FOR SHARE;
  IF current_epoch IS NULL OR current_epoch <> NEW.epoch THEN
    RAISE EXCEPTION 'stale epoch % for shard % (current %)', NEW.epoch, NEW.shard, current_epoch USING ERRCODE = 'TF001';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER actor_state_fence BEFORE INSERT OR UPDATE ON actor_state
  FOR EACH ROW EXECUTE FUNCTION actor_state_fence();
