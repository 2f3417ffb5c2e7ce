/**
 * The written-behind side of storage: shard epochs (the fence), actor state and activity
 * times, each a single statement however many rows it carries.
 *
 * Why the fence holds: `writeStates` locks the fence rows of its shards FOR SHARE, in shard
 * order, before it compares epochs, and `claimShards` bumps them in the same order. A bump
 * therefore waits for a write in progress, and a write that starts after a bump sees the
 * new epoch (READ COMMITTED re-reads a row it had to wait for). The trigger on actor_state
 * checks the same thing again, for any writer that does not go through here.
 */
import type { Sql } from './database.js';
import type { ActivityTouch, ActorStateRow } from './rows.js';

/** Takes shards over: bumps each one's epoch (creating it at 1) and returns shard → epoch. */
export async function claimShards(sql: Sql, shards: number[], owner: string): Promise<Map<number, number>> {
  if (shards.length === 0) return new Map();
  // Distinct and sorted: ON CONFLICT may touch a row once per statement, and a fixed lock
  // order keeps two claimers (or a claimer and a flush) from deadlocking.
  const ordered = [...new Set(shards)].sort((a, b) => a - b);
  const rows = await sql<{ shard: number; epoch: number }[]>`
    insert into shard_fence (shard, epoch, owner, updated_at)
    select s, 1, ${owner}, now() from unnest(${sql.array(ordered)}::int[]) as s order by s
    on conflict (shard) do update
      set epoch = shard_fence.epoch + 1, owner = excluded.owner, updated_at = excluded.updated_at
    returning shard, epoch`;
  return new Map(rows.map((row) => [row.shard, row.epoch]));
}

/**
 * Upserts actor states in one statement. Rows whose epoch is not their shard's current one
 * are skipped and returned as `fenced`: a newer owner has the shard, and these copies must
 * not serve again. For a key given twice, the last row wins.
 */
export async function writeStates(sql: Sql, rows: ActorStateRow[]): Promise<{ written: number; fenced: string[] }> {
  if (rows.length === 0) return { written: 0, fenced: [] };
  const latest = new Map<string, ActorStateRow>();
  for (const row of rows) latest.set(row.entityKey, row);
  const input = [...latest.values()].map((row) => ({ entity_key: row.entityKey, shard: row.shard, epoch: row.epoch, state: row.state }));
  const fenced = await sql<{ entity_key: string }[]>`
    with input as (
      select * from jsonb_to_recordset(${sql.json(input as never)}::jsonb)
        as r(entity_key text, shard integer, epoch bigint, state jsonb)
    ), fence as materialized (
      select shard, epoch from shard_fence
      where shard in (select shard from input)
      order by shard
      for share
    ), written as (
      insert into actor_state (entity_key, shard, epoch, state, updated_at)
      select i.entity_key, i.shard, i.epoch, i.state, now()
      from input i join fence f on f.shard = i.shard and f.epoch = i.epoch
      on conflict (entity_key) do update
        set shard = excluded.shard, epoch = excluded.epoch, state = excluded.state, updated_at = excluded.updated_at
      returning entity_key
    )
    select entity_key from input where entity_key not in (select entity_key from written)`;
  return { written: input.length - fenced.length, fenced: fenced.map((row) => row.entity_key) };
}

export async function loadState(sql: Sql, entityKey: string): Promise<unknown | null> {
  const [row] = await sql<{ state: unknown }[]>`select state from actor_state where entity_key = ${entityKey}`;
  return row === undefined ? null : row.state;
}

/**
 * Records when sessions and keys were last used, in one statement. A time never moves
 * backwards, and rows already as recent are left alone (no new row version to vacuum).
 */
export async function touchActivity(sql: Sql, sessions: ActivityTouch[], keys: ActivityTouch[]): Promise<void> {
  if (sessions.length === 0 && keys.length === 0) return;
  const encode = (touches: ActivityTouch[]) => sql.json(touches.map((t) => ({ id: t.id, at: t.at.toISOString() })) as never);
  // Grouped first: UPDATE ... FROM applies an arbitrary one of several matches per row.
  await sql`
    with session_touch as (
      select id, max(at) as at from jsonb_to_recordset(${encode(sessions)}::jsonb) as t(id text, at timestamptz) group by id
    ), key_touch as (
      select id, max(at) as at from jsonb_to_recordset(${encode(keys)}::jsonb) as t(id text, at timestamptz) group by id
    ), touched_sessions as (
      update sessions s set last_active_at = t.at
      from session_touch t where s.id = t.id and s.last_active_at < t.at
      returning 1
    )
    update api_keys k set last_used_at = t.at
    from key_touch t where k.id = t.id and (k.last_used_at is null or k.last_used_at < t.at)`;
}
