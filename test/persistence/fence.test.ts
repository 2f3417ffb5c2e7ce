import { encodeStateRow } from '../../src/persistence/actorState.js';
import type { ActorStateRow } from '../../src/persistence/index.js';
/**
 * The epoch fence, on both databases: a write-behind row is accepted only under its shard's
 * current epoch, and Postgres itself refuses a stale one, whatever the application does.
 */

import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLSTATE, Store } from '../../src/persistence/index.js';
import { DATABASE_KINDS, openTestDatabase, type TestDatabase } from '../support/database.js';

const encode = (rows: ActorStateRow[]) => rows.map(encodeStateRow);
const foundState = async (store: Store, key: string) => (await store.loadState(key, 0)).found;

describe.each(DATABASE_KINDS)('the fence on %s', (kind) => {
  let db: TestDatabase;
  let store: Store;

  beforeAll(async () => {
    db = await openTestDatabase(kind);
    store = new Store(db.database.sql);
  });
  afterAll(() => db?.cleanup());

  it('creates shards at epoch 1 and bumps them by one per claim', async () => {
    const first = await store.claimShards([2, 1, 2], 'node-a');
    expect([...first.entries()].sort()).toEqual([
      [1, 1],
      [2, 1],
    ]);
    const second = await store.claimShards([2, 3], 'node-b');
    expect(second).toEqual(
      new Map([
        [2, 2],
        [3, 1],
      ]),
    );
    const rows = await db.database.sql<{ shard: number; epoch: number; owner: string }[]>`
      select shard, epoch, owner from shard_fence where shard in (1, 2, 3) order by shard`;
    expect(rows.map((row) => ({ ...row }))).toEqual([
      { shard: 1, epoch: 1, owner: 'node-a' },
      { shard: 2, epoch: 2, owner: 'node-b' },
      { shard: 3, epoch: 1, owner: 'node-b' },
    ]);
    expect(await store.claimShards([], 'node-a')).toEqual(new Map());
  });

  it('refuses a shard outside 0..1023', async () => {
    await expect(store.claimShards([1024], 'node-a')).rejects.toMatchObject({ code: '23514' });
  });

  it('writes rows under the current epoch, and the last row of a key wins', async () => {
    const epoch = (await store.claimShards([10], 'node-a')).get(10)!;
    expect(
      await store.writeStates(
        encode([
          { entityKey: 'k1', shard: 10, epoch, state: { v: 1 } },
          { entityKey: 'k1', shard: 10, epoch, state: { v: 2 } },
          { entityKey: 'k2', shard: 10, epoch, state: [] },
        ]),
      ),
    ).toEqual({ written: 2, fenced: [] });
    expect(await foundState(store, 'k1')).toEqual({ v: 2 });
    expect(await store.writeStates(encode([{ entityKey: 'k1', shard: 10, epoch, state: { v: 3 } }]))).toEqual({ written: 1, fenced: [] });
    expect(await foundState(store, 'k1')).toEqual({ v: 3 });
    expect(await store.writeStates(encode([]))).toEqual({ written: 0, fenced: [] });
  });

  it('skips and reports rows under a stale epoch, writing the rest of the batch', async () => {
    const stale = (await store.claimShards([11, 12], 'node-a')).get(11)!;
    await store.writeStates(encode([{ entityKey: 's1', shard: 11, epoch: stale, state: { v: 1 } }]));
    const current = (await store.claimShards([11], 'node-b')).get(11)!;
    const epoch12 = (await db.database.sql<{ epoch: number }[]>`select epoch from shard_fence where shard = 12`)[0]!.epoch;
    const result = await store.writeStates(
      encode([
        { entityKey: 's1', shard: 11, epoch: stale, state: { v: 2 } },
        { entityKey: 's2', shard: 11, epoch: stale, state: { v: 2 } },
        { entityKey: 's3', shard: 12, epoch: epoch12, state: { v: 2 } },
        { entityKey: 's4', shard: 11, epoch: current + 1, state: { v: 2 } },
        { entityKey: 's5', shard: 999, epoch: 1, state: { v: 2 } },
      ]),
    );
    expect(result.written).toBe(1);
    expect(result.fenced.sort()).toEqual(['s1', 's2', 's4', 's5']);
    expect(await foundState(store, 's1')).toEqual({ v: 1 });
    expect(await foundState(store, 's2')).toBeNull();
    expect(await foundState(store, 's3')).toEqual({ v: 2 });
    // The new owner writes over the old owner's row.
    expect(await store.writeStates(encode([{ entityKey: 's1', shard: 11, epoch: current, state: { v: 9 } }]))).toEqual({ written: 1, fenced: [] });
    expect(await foundState(store, 's1')).toEqual({ v: 9 });
  });

  it('refuses a stale epoch in the database itself, on insert and on update', async () => {
    const { sql } = db.database;
    const stale = (await store.claimShards([20], 'node-a')).get(20)!;
    await store.writeStates(encode([{ entityKey: 'direct', shard: 20, epoch: stale, state: {} }]));
    const current = (await store.claimShards([20], 'node-b')).get(20)!;
    await expect(sql`insert into actor_state (entity_key, shard, epoch, state) values ('direct2', 20, ${stale}, '{}')`).rejects.toMatchObject({
      code: SQLSTATE.staleEpoch,
    });
    await expect(sql`update actor_state set state = '{"v":1}' where entity_key = 'direct'`).rejects.toMatchObject({ code: SQLSTATE.staleEpoch });
    await expect(sql`insert into actor_state (entity_key, shard, epoch, state) values ('direct3', 21, 1, '{}')`).rejects.toMatchObject({
      code: SQLSTATE.staleEpoch,
    });
    await sql`insert into actor_state (entity_key, shard, epoch, state) values ('direct2', 20, ${current}, '{}')`;
  });

  it('refuses, in the database itself, a statement of many shards with one row stale, or with two epochs of one shard, and writes none of it', async () => {
    const { sql } = db.database;
    const shards = Array.from({ length: 40 }, (_, i) => 600 + i);
    // Claimed twice: epoch − 1 is one each shard really had.
    await store.claimShards(shards, 'node-a');
    const epochs = await store.claimShards(shards, 'node-b');
    const rows = (stale: { shard: number; epoch: number }) =>
      shards.map((shard) => ({ key: `many-${shard}`, shard, epoch: shard === stale.shard ? stale.epoch : epochs.get(shard)! }));
    const insert = (list: { key: string; shard: number; epoch: number }[]) =>
      sql`insert into actor_state (entity_key, shard, epoch, state)
        select key, shard, epoch, '{}' from unnest(${list.map((r) => r.key)}::text[], ${list.map((r) => r.shard)}::int[], ${list.map((r) => r.epoch)}::bigint[]) as t(key, shard, epoch)`;
    // One row of the 40 behind its shard's epoch, then ahead of it.
    await expect(insert(rows({ shard: 623, epoch: epochs.get(623)! - 1 }))).rejects.toMatchObject({ code: SQLSTATE.staleEpoch });
    await expect(insert(rows({ shard: 639, epoch: epochs.get(639)! + 1 }))).rejects.toMatchObject({ code: SQLSTATE.staleEpoch });
    // Every row current, and one more of shard 610 under an epoch it no longer has.
    await expect(insert([...rows({ shard: -1, epoch: 0 }), { key: 'many-610-old', shard: 610, epoch: epochs.get(610)! - 1 }])).rejects.toMatchObject({
      code: SQLSTATE.staleEpoch,
    });
    expect((await sql`select 1 from actor_state where entity_key like 'many-%'`).length).toBe(0);
    await insert(rows({ shard: -1, epoch: 0 }));
    expect((await sql`select 1 from actor_state where entity_key like 'many-%'`).length).toBe(40);
  });

  it('never lets an epoch go back, nor a fence row be deleted', async () => {
    const { sql } = db.database;
    await store.claimShards([30], 'node-a');
    await store.claimShards([30], 'node-a');
    await expect(sql`update shard_fence set epoch = 1 where shard = 30`).rejects.toMatchObject({ code: SQLSTATE.epochBackwards });
    await expect(sql`delete from shard_fence where shard = 30`).rejects.toMatchObject({ code: SQLSTATE.epochBackwards });
    await sql`update shard_fence set owner = 'node-c' where shard = 30`;
  });
});

describe('the fence under concurrency (postgres)', () => {
  let db: TestDatabase;
  let store: Store;
  let other: postgres.Sql;

  beforeAll(async () => {
    db = await openTestDatabase('postgres');
    store = new Store(db.database.sql);
    other = postgres(db.url!, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await other?.end();
    await db?.cleanup();
  });

  it('makes a claim wait for a write in progress, and the write after it is fenced', async () => {
    const epoch = (await store.claimShards([40], 'node-a')).get(40)!;
    let claimed: Promise<Map<number, number>> | undefined;
    let claimDone = false;
    await other.begin(async (tx) => {
      // An old owner's write, still uncommitted: its trigger holds the fence row FOR SHARE.
      await tx`insert into actor_state (entity_key, shard, epoch, state) values ('race', 40, ${epoch}, '{"v":1}')`;
      claimed = store.claimShards([40], 'node-b');
      void claimed.then(() => {
        claimDone = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(claimDone).toBe(false);
    });
    expect((await claimed!).get(40)).toBe(epoch + 1);
    expect(await foundState(store, 'race')).toEqual({ v: 1 });
    expect(await store.writeStates(encode([{ entityKey: 'race', shard: 40, epoch, state: { v: 2 } }]))).toEqual({ written: 0, fenced: ['race'] });
  });

  it('makes a write wait for a claim in progress and then report the row fenced', async () => {
    const epoch = (await store.claimShards([41], 'node-a')).get(41)!;
    let written: Promise<{ written: number; fenced: string[] }> | undefined;
    await other.begin(async (tx) => {
      await tx`update shard_fence set epoch = epoch + 1, owner = 'node-b' where shard = 41`;
      written = store.writeStates(encode([{ entityKey: 'race2', shard: 41, epoch, state: { v: 1 } }]));
      await new Promise((resolve) => setTimeout(resolve, 300));
    });
    // Not an error from the trigger: the batch saw the new epoch once the claim committed.
    expect(await written!).toEqual({ written: 0, fenced: ['race2'] });
    expect(await foundState(store, 'race2')).toBeNull();
  });

  // Past the statement's own check: the trigger alone, on a fence row it must wait for.
  it('makes a direct write wait for a claim in progress: refused once the claim commits, written if it rolls back', async () => {
    const { sql } = db.database;
    const epoch = (await store.claimShards([42], 'node-a')).get(42)!;
    const direct = (key: string) => sql`insert into actor_state (entity_key, shard, epoch, state) values (${key}, 42, ${epoch}, '{}')`.execute();
    const raced = async (outcome: 'commit' | 'rollback', key: string) => {
      let write: Promise<unknown> | undefined;
      let settled = false;
      await other
        .begin(async (tx) => {
          await tx`update shard_fence set epoch = epoch + 1, owner = 'node-b' where shard = 42`;
          write = direct(key);
          write.then(
            () => (settled = true),
            () => (settled = true),
          );
          await new Promise((resolve) => setTimeout(resolve, 300));
          expect(settled).toBe(false);
          if (outcome === 'rollback') throw new Error('rolled back');
        })
        .catch((error: unknown) => {
          if (!(outcome === 'rollback' && error instanceof Error && error.message === 'rolled back')) throw error;
        });
      return write!;
    };
    await expect(raced('rollback', 'direct-42-a')).resolves.toBeDefined();
    expect(await foundState(store, 'direct-42-a')).toEqual({});
    await expect(raced('commit', 'direct-42-b')).rejects.toMatchObject({ code: SQLSTATE.staleEpoch });
    expect(await foundState(store, 'direct-42-b')).toBeNull();
  });
});
