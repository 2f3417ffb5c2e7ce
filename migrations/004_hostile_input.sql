-- API keys carry a MAC of their routing part from now on, checked at the edge; keys issued
-- before carry none, and the edge accepts a key without one only if its id is listed here
-- as unsigned. New keys are inserted with signed = true.
ALTER TABLE api_keys ADD COLUMN signed boolean NOT NULL DEFAULT false;

-- Limiter state (the service limiter, per-address and login-attempt counters) matters only
-- until its windows have passed; the writer says when, and rows past it are deleted.
ALTER TABLE actor_state ADD COLUMN expires_at timestamptz;
CREATE INDEX actor_state_expiry ON actor_state (expires_at) WHERE expires_at IS NOT NULL;

-- Limiter keys move into namespaces (limiter:<namespace>:<key>) and login counters are
-- keyed by a hash of the email, not the email: the rows under the old keys would never be
-- read again, and some hold emails and addresses. They are short-lived counters (15 minutes
-- at most for logins), so they are deleted rather than converted.
DELETE FROM actor_state WHERE entity_key LIKE 'limiter:%';
