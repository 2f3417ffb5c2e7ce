/**
 * A flush that rewrites every row of a page in one statement keeps each new version on its
 * page (a heap-only update: no index touched, the table does not grow). Postgres prunes the
 * old versions only once the statement has committed, so the page needs room for all of
 * them at once (migrations/013).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStateRow } from '../../src/persistence/actorState.js';
import { Store } from '../../src/persistence/index.js';
import { openTestDatabase, type TestDatabase } from '../support/database.js';

const ROWS = 600;

/** About what a user's state holds after a few requests (a row of about 375 bytes, as in the scale bench). */
function userRow(i: number, epoch: number, seq: number) {
  const now = 1_796_652_000_000 + i;
  return encodeStateRow({
    entityKey: `u${String(i).padStart(20, 'a')}`,
    shard: 7,
    epoch,
    seq,
    state: {
      limits: {
        requests: { kind: 'rate', tat: now, anchor: now, units: 1, limit: 1_000_000_000, period_ms: 60_000 },
        tokens: { kind: 'budget', used: seq, period_start: now },
      },
      usage: { hour: now, rolls: 0, cells: ['default', `k${i}`, seq, seq, 0] },
    },
    liveUsage: { hour: now, cells: ['default', 'kibqjg3wep6bj', seq, seq, 0] },
    expiresAt: null,
  });
}

describe('room on a page of actor_state', () => {
  let db: TestDatabase;
  let store: Store;

  beforeAll(async () => {
    db = await openTestDatabase('postgres');
    store = new Store(db.database.sql);
  });
  afterAll(() => db?.cleanup());

  it('keeps a new version of every row of its pages when one statement rewrites them all', async () => {
    const { sql } = db.database;
    const epoch = (await store.claimShards([7], 'node-a')).get(7)!;
    const rows = (seq: number) => Array.from({ length: ROWS }, (_, i) => userRow(i, epoch, seq));
    const counts = async () => {
      await sql`select pg_stat_force_next_flush()`;
      const [row] = await sql<{ updates: number; hot: number; pages: number }[]>`
        select n_tup_upd::int as updates, n_tup_hot_upd::int as hot,
          (pg_relation_size('actor_state') / current_setting('block_size')::int)::int as pages
        from pg_stat_user_tables where relname = 'actor_state'`;
      return row!;
    };
    expect((await store.writeStates(rows(1))).written).toBe(ROWS);
    const before = await counts();
    // In the order they were written: each statement holds whole pages' rows.
    expect((await store.writeStates(rows(2))).written).toBe(ROWS);
    const after = await counts();
    expect(after.updates - before.updates).toBe(ROWS);
    expect(after.hot - before.hot).toBe(ROWS);
    expect(after.pages).toBe(before.pages);
  });
});
