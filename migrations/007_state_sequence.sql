-- Every copy of an actor's state carries a sequence number: the actor's change counter,
-- which starts from the loaded copy's and grows with each change. With the shard's epoch it
-- orders the copies of one actor, wherever they are kept: the newer of a Postgres row and a
-- Redis replica snapshot is the one with the higher (epoch, seq). Rows written before this
-- migration count as sequence 0.
ALTER TABLE actor_state ADD COLUMN seq bigint NOT NULL DEFAULT 0;
