-- The fence on actor_state checks each statement once, not each row: the row trigger of
-- 001 ran a query per row, half of what writing 1,000 rows of state cost. The check is as
-- strong. After a statement's rows are written, and before it returns, it locks the fence
-- rows of every (shard, epoch) it wrote FOR SHARE and fails the whole statement if any
-- epoch is not its shard's current one. A claim that committed first is seen (the query
-- runs under a new snapshot, and a row it had to wait for is re-read). A claim that comes
-- later waits for this transaction, so no row lands under an epoch that is being replaced.
CREATE FUNCTION actor_state_fence_statement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  stale record;
BEGIN
  -- Locked first, in shard order, and held until the transaction ends.
  PERFORM 1 FROM shard_fence
  WHERE shard = ANY (ARRAY(SELECT DISTINCT shard FROM written_rows))
  ORDER BY shard
  FOR SHARE;
  SELECT w.shard, w.epoch, f.epoch AS current_epoch INTO stale
  FROM (SELECT DISTINCT shard, epoch FROM written_rows) w
  LEFT JOIN shard_fence f ON f.shard = w.shard
  WHERE f.epoch IS DISTINCT FROM w.epoch
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'stale epoch % for shard % (current %)', stale.epoch, stale.shard, stale.current_epoch USING ERRCODE = 'TF001';
  END IF;
  RETURN NULL;
END $$;

DROP TRIGGER actor_state_fence ON actor_state;
DROP FUNCTION actor_state_fence();
-- A trigger with a transition table may have one event only: one for inserts, one for
-- updates (an INSERT ... ON CONFLICT DO UPDATE fires both, each with its own rows).
CREATE TRIGGER actor_state_fence_insert AFTER INSERT ON actor_state
  REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION actor_state_fence_statement();
CREATE TRIGGER actor_state_fence_update AFTER UPDATE ON actor_state
  REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION actor_state_fence_statement();
