/**
 * The epoch fence, on both databases: a write-behind row is accepted only under its shard's
 * current epoch, and Postgres itself refuses a stale one, whatever the application does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { createTestDatabase } from '../../test/support/postgres.js';
import { makeTempDir } from '../../test/support/tmp.js';
import { migrate, openDatabase, Store, type Database } from './index.js';

const log = pino({ level: 'silent' });

describe.each(['postgres', 'pglite'] as const)('on %s', (kind) => {
  let database: Database;
  let drop = async () => {};
  let store: Store;

  beforeAll(async () => {
    if (kind === 'postgres') {
      const created = await createTestDatabase();
      drop = created.drop;
      database = await openDatabase({ url: created.url, dataDir: await makeTempDir(), log });
    } else {
      database = await openDatabase({ url: undefined, dataDir: await makeTempDir(), log });
    }
    await migrate(database.sql);
    store = new Store(database.sql);
  });
  afterAll(async () => {
    await database.close();
    await drop();
  });

  it('applies each migration once', async () => {
    expect((await migrate(database.sql)).applied).toEqual([]);
    const rows = await database.sql<{ version: number }[]>`select version from schema_migrations order by version`;
    expect(rows.map((row) => row.version)).toEqual([1, 2]);
  });

  it('bumps epochs when shards are claimed', async () => {
    const first = await store.claimShards([1, 2], 'node-a');
    expect([...first.values()]).toEqual([1, 1]);
    const second = await store.claimShards([2], 'node-b');
    expect(second.get(2)).toBe(2);
  });

  it('writes rows under the current epoch and skips stale ones', async () => {
    const epochs = await store.claimShards([10], 'node-a');
    const current = epochs.get(10)!;
    const written = await store.writeStates([{ entityKey: 'k1', shard: 10, epoch: current, state: { v: 1 } }]);
    expect(written).toEqual({ written: 1, fenced: [] });
    await store.claimShards([10], 'node-b');
    const stale = await store.writeStates([
      { entityKey: 'k1', shard: 10, epoch: current, state: { v: 2 } },
      { entityKey: 'k2', shard: 10, epoch: current, state: { v: 2 } },
    ]);
    expect(stale).toEqual({ written: 0, fenced: ['k1', 'k2'] });
    expect(await store.loadState('k1')).toEqual({ v: 1 });
  });

  it('refuses a stale epoch in the database itself, and never lets an epoch go back', async () => {
    const epochs = await store.claimShards([20], 'node-a');
    const stale = epochs.get(20)!;
    await store.claimShards([20], 'node-b');
    await expect(
      database.sql`insert into actor_state (entity_key, shard, epoch, state) values ('direct', 20, ${stale}, '{}')`,
    ).rejects.toMatchObject({ code: 'TF001' });
    await expect(database.sql`update shard_fence set epoch = 1 where shard = 20`).rejects.toMatchObject({ code: 'TF002' });
  });
});

describe('migrations under contention', () => {
  it('let two concurrent migrators apply each file once', async () => {
    const created = await createTestDatabase();
    const a = await openDatabase({ url: created.url, dataDir: await makeTempDir(), log });
    const b = await openDatabase({ url: created.url, dataDir: await makeTempDir(), log });
    try {
      const [first, second] = await Promise.all([migrate(a.sql), migrate(b.sql)]);
      expect([...first.applied, ...second.applied].sort()).toEqual(['001_init.sql', '002_default_tiers.sql']);
    } finally {
      await a.close();
      await b.close();
      await created.drop();
    }
  });
});
