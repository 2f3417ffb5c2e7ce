-- The fence trigger of 006 looked every shard a statement wrote up twice: once to lock its
-- fence row FOR SHARE, once more to compare the epoch. A flush slice of 1,000 rows spans
-- about 640 of the 1,024 shards, so that was some 1,300 index probes a statement. It now
-- locks only the fence rows whose epoch is the one written, in one query, and counts them:
-- fewer than the (shard, epoch) pairs written means a stale epoch (or a missing fence row),
-- and the statement fails. As strong as before: the query runs under a new snapshot, so a
-- claim that committed first is seen, and a fence row it had to wait for is read again once
-- the claim commits and locked only if its epoch still matches. Locks are taken in shard
-- order, as every writer and claimer takes them, and held until the transaction ends.
CREATE OR REPLACE FUNCTION actor_state_fence_statement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  written integer;
  current integer;
  stale record;
BEGIN
  SELECT count(*) INTO written FROM (SELECT DISTINCT shard, epoch FROM written_rows) w;
  SELECT count(*) INTO current FROM (
    SELECT f.shard FROM shard_fence f
    WHERE (f.shard, f.epoch) IN (SELECT DISTINCT shard, epoch FROM written_rows)
    ORDER BY f.shard
    FOR SHARE
  ) locked;
  IF current < written THEN
    SELECT w.shard, w.epoch, f.epoch AS current_epoch INTO stale
    FROM (SELECT DISTINCT shard, epoch FROM written_rows) w
    LEFT JOIN shard_fence f ON f.shard = w.shard
    WHERE f.epoch IS DISTINCT FROM w.epoch
    LIMIT 1;
    RAISE EXCEPTION 'stale epoch % for shard % (current %)', stale.epoch, stale.shard, stale.current_epoch USING ERRCODE = 'TF001';
  END IF;
  RETURN NULL;
END $$;
