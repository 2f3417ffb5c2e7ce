-- Actor state as one compact binary column. A flush rewrites about one row per request at
-- scale, and Postgres spent most of each row's CPU parsing its `jsonb` state (a user's
-- quota state is ~300 bytes of nested JSON): `body` holds the same state as MessagePack,
-- stored as given. Rows written before this migration keep their `state` until their next
-- write, which moves them to `body` (state = NULL); readers take `body` when it is there.
ALTER TABLE actor_state ADD COLUMN body bytea;
ALTER TABLE actor_state ALTER COLUMN state DROP NOT NULL;
ALTER TABLE actor_state ADD CONSTRAINT actor_state_has_state CHECK (body IS NOT NULL OR state IS NOT NULL);

-- The current hour's usage counters of a user, as JSON text ({"hour": ms, "cells": [...]},
-- src/shards/usage.ts), for `usage_hours` to read: `body` is opaque to SQL. Text, not jsonb:
-- nothing parses it on the write path, only a usage query does.
ALTER TABLE actor_state ADD COLUMN usage_live text;

-- Room on every page for the next version of its rows, so that a flush's update stays on
-- the page and touches no index (a heap-only tuple): no indexed column changes on a flush.
-- Applies to pages written from now on.
ALTER TABLE actor_state SET (fillfactor = 70);

-- As in 009, with the live counters read from `usage_live`, or from a row not yet rewritten.
CREATE OR REPLACE VIEW usage_hours AS
  SELECT user_id, hour, resource, key_id, amount, requests, denied FROM usage
  UNION ALL
  SELECT a.entity_key, to_timestamp((l.live->>'hour')::bigint / 1000.0),
         u.c->>i, u.c->>(i + 1), (u.c->>(i + 2))::bigint, (u.c->>(i + 3))::bigint, (u.c->>(i + 4))::bigint
  FROM actor_state a
  CROSS JOIN LATERAL (
    SELECT coalesce(a.usage_live::jsonb, CASE WHEN a.body IS NULL THEN a.state->'usage' END) AS live
  ) AS l
  CROSS JOIN LATERAL (
    SELECT CASE WHEN jsonb_typeof(l.live->'cells') = 'array' THEN l.live->'cells' ELSE '[]'::jsonb END AS c
  ) AS u
  CROSS JOIN LATERAL generate_series(0, jsonb_array_length(u.c) - 5, 5) AS i;
