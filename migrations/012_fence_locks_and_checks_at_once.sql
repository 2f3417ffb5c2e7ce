-- The fence trigger of 006 looked every shard a statement wrote up twice: once to lock its
-- fence row FOR SHARE, once more to compare the epoch. A flush slice of 1,000 rows spans
-- about 640 of the 1,024 shards, so that was some 1,300 index probes a statement. It now
-- locks the fence rows whose epoch is the one written, in one query, and counts them:
-- fewer than the (shard, epoch) pairs written means a stale epoch (or one ahead, or a
-- missing fence row), and the statement fails. At least as strong as before: the query
-- runs under a new snapshot, so a claim that committed first is seen, and a fence row it
-- had to wait for is read again once the claim commits and counted only if its epoch still
-- matches. One case it refuses where 006 waited and accepted: a row written under the epoch
-- a claim still in progress is about to commit (no node can know that epoch before then).
-- Locks are taken in shard order and held until the transaction ends.
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
    -- Names one culprit for the message; a claim committed meanwhile can leave none to name.
    SELECT w.shard, w.epoch, f.epoch AS current_epoch INTO stale
    FROM (SELECT DISTINCT shard, epoch FROM written_rows) w
    LEFT JOIN shard_fence f ON f.shard = w.shard
    WHERE f.epoch IS DISTINCT FROM w.epoch
    LIMIT 1;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'stale epoch: % of % (shard, epoch) pairs written are current', current, written USING ERRCODE = 'TF001';
    END IF;
    RAISE EXCEPTION 'stale epoch % for shard % (current %)', stale.epoch, stale.shard, stale.current_epoch USING ERRCODE = 'TF001';
  END IF;
  RETURN NULL;
END $$;
