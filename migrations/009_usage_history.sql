-- Usage history: what each user was charged and refused, by UTC hour, resource and the
-- credential that asked (key_id: an API key's id, a session's id, or '' for a platform
-- service). One row per user, hour, resource and credential, never one per request: the
-- current hour's counters live in the user's actor_state row (state->'usage', written with
-- the quota state in one statement) and are added here when the hour is rolled, in the same
-- statement that writes the state (src/persistence/actorState.ts).
CREATE TABLE usage (
  user_id   text NOT NULL,
  hour      timestamptz NOT NULL,
  resource  text NOT NULL,
  key_id    text NOT NULL DEFAULT '',
  amount    bigint NOT NULL DEFAULT 0 CHECK (amount >= 0),
  requests  bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
  denied    bigint NOT NULL DEFAULT 0 CHECK (denied >= 0),
  PRIMARY KEY (user_id, hour, resource, key_id)
) PARTITION BY RANGE (hour);
-- Rows arrive in about hour order, so a block range index finds a time range across users
-- at a fraction of a B-tree's size.
CREATE INDEX usage_hour ON usage USING brin (hour);

-- The highest roll number whose closed hours this user's row has added to `usage`: a write
-- adds only later ones, so a write sent again after a lost answer adds nothing twice.
ALTER TABLE actor_state ADD COLUMN usage_rolls bigint NOT NULL DEFAULT 0;

-- Makes the monthly partitions from the month of `from_month` on, `months` of them, named
-- usage_YYYY_MM. Idempotent; concurrent callers take turns on a transaction lock.
CREATE FUNCTION usage_ensure_partitions(from_month timestamptz, months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  first timestamptz := date_trunc('month', from_month AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  start timestamptz;
  name text;
  made integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tally usage partitions'));
  -- Making a partition locks `usage` exclusively: rather than queue behind a long read (and
  -- make every write of usage queue behind it), give up after a while; the caller tries again.
  PERFORM set_config('lock_timeout', '5s', true);
  FOR i IN 0 .. months - 1 LOOP
    start := ((first AT TIME ZONE 'UTC') + make_interval(months => i)) AT TIME ZONE 'UTC';
    name := 'usage_' || to_char(start AT TIME ZONE 'UTC', 'YYYY_MM');
    IF to_regclass(name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF usage FOR VALUES FROM (%L) TO (%L)', name, start,
                     ((start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END $$;

-- Drops the monthly partitions that end on or before `before`. Returns their names.
CREATE FUNCTION usage_drop_partitions(before timestamptz) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  part record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tally usage partitions'));
  PERFORM set_config('lock_timeout', '5s', true);
  FOR part IN
    SELECT c.relname AS name
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'usage'::regclass AND c.relname ~ '^usage_[0-9]{4}_[0-9]{2}$'
      AND ((to_date(substr(c.relname, 7), 'YYYY_MM') + interval '1 month') AT TIME ZONE 'UTC') <= before
    ORDER BY c.relname
  LOOP
    EXECUTE format('DROP TABLE %I', part.name);
    RETURN NEXT part.name;
  END LOOP;
END $$;

SELECT usage_ensure_partitions(now(), 3);

-- Every hour of usage there is: the closed hours in `usage`, and the hours still counted in
-- users' state rows (as of their last write). The closed hours a state row lists under
-- `pending` are already in `usage` (the statement that wrote the row added them), so only
-- `cells` count here: five slots per resource and credential (resource, key, amount,
-- requests, denied), as the actor holds them (src/shards/usage.ts).
CREATE VIEW usage_hours AS
  SELECT user_id, hour, resource, key_id, amount, requests, denied FROM usage
  UNION ALL
  SELECT a.entity_key, to_timestamp((a.state->'usage'->>'hour')::bigint / 1000.0),
         c->>i, c->>(i + 1), (c->>(i + 2))::bigint, (c->>(i + 3))::bigint, (c->>(i + 4))::bigint
  FROM actor_state a
  CROSS JOIN LATERAL (
    SELECT CASE WHEN jsonb_typeof(a.state->'usage'->'cells') = 'array' THEN a.state->'usage'->'cells' ELSE '[]'::jsonb END AS c
  ) AS u
  CROSS JOIN LATERAL generate_series(0, jsonb_array_length(u.c) - 5, 5) AS i;
