-- Epochs only move forward. Deleting a fence row would let the shard start again at 1,
-- under an epoch an old owner may still hold, so that is refused too.
CREATE OR REPLACE FUNCTION shard_fence_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'shard % fence row may not be deleted', OLD.shard USING ERRCODE = 'TF002';
  END IF;
  IF NEW.epoch < OLD.epoch THEN
    RAISE EXCEPTION 'shard % epoch may not go back from % to %', NEW.shard, OLD.epoch, NEW.epoch USING ERRCODE = 'TF002';
  END IF;
  RETURN NEW;
END $$;
DROP TRIGGER shard_fence_forward ON shard_fence;
CREATE TRIGGER shard_fence_forward BEFORE UPDATE OR DELETE ON shard_fence
  FOR EACH ROW EXECUTE FUNCTION shard_fence_forward();
