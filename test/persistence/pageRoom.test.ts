/**
 * A flush that rewrites every row of a page in one statement keeps each new version on its
 * page (a heap-only update: no index touched, the table does not grow): actor states, and
 * the last-use times of keys and sessions. Postgres prunes the old versions only once the
 * statement has committed, so the page needs room for all of them at once (migrations/013).
 */
import type { ReservedSql } from 'postgres';
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
  // One connection for every statement: `pg_stat_force_next_flush` reports only its own
  // connection's counts (others report theirs at most once a second).
  let sql: ReservedSql;
  let store: Store;

  beforeAll(async () => {
    db = await openTestDatabase('postgres');
    sql = await db.database.sql.reserve();
    store = new Store(sql);
  });
  afterAll(async () => {
    sql?.release();
    await db?.cleanup();
  });

  /** Updates of `table` so far, those that stayed on their page, and its pages. */
  const counts = async (table: string) => {
    await sql`select pg_stat_force_next_flush()`;
    const [row] = await sql<{ updates: number; hot: number; pages: number }[]>`
      select n_tup_upd::int as updates, n_tup_hot_upd::int as hot,
        (pg_relation_size(${table}::regclass) / current_setting('block_size')::int)::int as pages
      from pg_stat_user_tables where relname = ${table}`;
    return row!;
  };

  /** Runs `rewrite` and checks that it updated every row of `table` on its page. */
  async function expectAllHeapOnly(table: string, rewrite: () => Promise<unknown>): Promise<void> {
    const before = await counts(table);
    await rewrite();
    const after = await counts(table);
    expect(after.updates - before.updates).toBe(ROWS);
    expect(after.hot - before.hot).toBe(ROWS);
    expect(after.pages).toBe(before.pages);
  }

  it('keeps a new version of every state on its page when one statement rewrites whole pages', async () => {
    const epoch = (await store.claimShards([7], 'node-a')).get(7)!;
    const rows = (seq: number) => Array.from({ length: ROWS }, (_, i) => userRow(i, epoch, seq));
    expect((await store.writeStates(rows(1))).written).toBe(ROWS);
    // In the order they were written: each statement holds whole pages' rows.
    await expectAllHeapOnly('actor_state', async () => expect((await store.writeStates(rows(2))).written).toBe(ROWS));
  });

  // Keys used before: a key's first use also makes its row longer (by the time it did not
  // have), and a page of keys never used keeps most, not all, of them on it (563 of 600
  // when this test's keys had no last use).
  it('keeps a new last-use time of every key and session on its page', async () => {
    const ids = Array.from({ length: ROWS }, (_, i) => String(i).padStart(20, 'a'));
    await sql`insert into users (id, email, tier, password_hash) select 'u' || id, id || '@example.com', 'free', 'x' from unnest(${ids}::text[]) as id`;
    await sql`
      insert into api_keys (id, user_id, prefix, hash, name, scopes, created_at, last_used_at, signed)
      select 'k' || id, 'u' || id, 'tk_u' || id || '_k' || id, md5(id) || md5(id), 'a key', '{quota}', now(), now(), true
      from unnest(${ids}::text[]) as id`;
    await sql`
      insert into sessions (id, user_id, device_name, device_type, ip, user_agent, created_at, expires_at, last_active_at)
      select 's' || id, 'u' || id, 'laptop', 'desktop', '203.0.113.7', 'Mozilla/5.0 (X11; Linux x86_64)', now(), now() + interval '30 days', now()
      from unnest(${ids}::text[]) as id`;
    const at = new Date();
    await expectAllHeapOnly('api_keys', () =>
      store.touchActivity(
        [],
        ids.map((id) => ({ id: `k${id}`, at })),
      ),
    );
    await expectAllHeapOnly('sessions', () =>
      store.touchActivity(
        ids.map((id) => ({ id: `s${id}`, at })),
        [],
      ),
    );
  });
});
