-- The database's identity: one random value made once, when this migration runs. Whatever
-- Tally keeps outside Postgres about this database (the Redis replica's copies and fence)
-- carries it, so that copies kept for another database (one re-created under the same
-- Redis prefix, or restored) are never taken for this one's.
CREATE TABLE database_incarnation (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  incarnation text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO database_incarnation (incarnation) VALUES (replace(gen_random_uuid()::text, '-', ''));
