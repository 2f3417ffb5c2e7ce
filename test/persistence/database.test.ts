/**
 * Opening and closing both kinds of database: what the driver returns for Tally's column
 * types, and embedded PGlite keeping its data across restarts and refusing a second process.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStateRow } from '../../src/persistence/actorState.js';
import type { ActorStateRow } from '../../src/persistence/index.js';
import { DataDirInUseError, migrate, openDatabase, Store } from '../../src/persistence/index.js';
import { DATABASE_KINDS, openTestDatabase, silentLog, type TestDatabase } from '../support/database.js';
import { makeTempDir } from '../support/tmp.js';

const encode = (rows: ActorStateRow[]) => rows.map(encodeStateRow);
const foundState = async (store: Store, key: string) => (await store.loadState(key, 0)).found;

describe.each(DATABASE_KINDS)('%s', (kind) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await openTestDatabase(kind, { migrate: false });
  });
  afterAll(() => db?.cleanup());

  it('takes an array parameter in the first query of a fresh pool', async () => {
    const fresh = await openTestDatabase(kind, { migrate: false });
    try {
      expect(await fresh.database.sql`select ${fresh.database.sql.array([1, 2, 3])}::int[] as a`).toEqual([{ a: [1, 2, 3] }]);
    } finally {
      await fresh.cleanup();
    }
  });

  it('reports its kind', () => {
    expect(db.database.kind).toBe(kind);
  });

  it('returns int8 as a number, timestamptz as a Date and jsonb parsed', async () => {
    const [row] = await db.database.sql<{ big: number; count: number; at: Date; doc: unknown; list: string[] }[]>`
      select 42::int8 as big, count(*) as count, '2024-05-06T07:08:09.123456Z'::timestamptz as at,
             '{"a":[1,{"b":null}]}'::jsonb as doc, array['x','y'] as list
      from (values (1), (2)) as v(x)`;
    expect(row).toEqual({ big: 42, count: 2, at: new Date('2024-05-06T07:08:09.123Z'), doc: { a: [1, { b: null }] }, list: ['x', 'y'] });
  });

  it('runs queries concurrently through its pool', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => db.database.sql<{ i: number }[]>`select ${i}::int as i`));
    expect(results.map((rows) => rows[0]!.i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('keeps a transaction to itself', async () => {
    const { sql } = db.database;
    await sql`create table if not exists tx_probe (id int)`;
    await expect(
      sql.begin(async (tx) => {
        await tx`insert into tx_probe values (1)`;
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    const [row] = await sql<{ n: number }[]>`select count(*) as n from tx_probe`;
    expect(row!.n).toBe(0);
  });
});

describe('embedded PGlite', () => {
  // One data directory for all: creating one costs seconds (initdb), reopening it does not.
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await makeTempDir();
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  it('keeps its data across close and reopen', async () => {
    const first = await openDatabase({ dataDir, log: silentLog });
    await migrate(first.sql);
    const store = new Store(first.sql);
    const epoch = (await store.claimShards([7], 'node-a')).get(7)!;
    await store.writeStates(encode([{ entityKey: 'kept', shard: 7, epoch, state: { used: 3 } }]));
    await first.close();
    expect(existsSync(join(dataDir, 'pglite', 'PG_VERSION'))).toBe(true);
    expect(existsSync(join(dataDir, 'pglite.lock'))).toBe(false);

    const second = await openDatabase({ dataDir, log: silentLog });
    try {
      expect(await migrate(second.sql)).toEqual({ applied: [] });
      expect(await foundState(new Store(second.sql), 'kept')).toEqual({ used: 3 });
      expect((await new Store(second.sql).claimShards([7], 'node-b')).get(7)).toBe(epoch + 1);
    } finally {
      await second.close();
    }
  });

  it('refuses a data directory that is already open, and frees it on close', async () => {
    const first = await openDatabase({ dataDir, log: silentLog });
    try {
      expect(await readFile(join(dataDir, 'pglite.lock'), 'utf8')).toBe(`${process.pid}\n`);
      await expect(openDatabase({ dataDir, log: silentLog })).rejects.toBeInstanceOf(DataDirInUseError);
    } finally {
      await first.close();
    }
    const again = await openDatabase({ dataDir, log: silentLog });
    await again.close();
  });

  it('takes over a lock left by a process that is gone', async () => {
    // Pids are below 2^22 on Linux; this one cannot be running.
    await writeFile(join(dataDir, 'pglite.lock'), '99999999\n');
    const database = await openDatabase({ dataDir, log: silentLog });
    await database.close();
  });

  it('refuses a lock held by another live process', async () => {
    await writeFile(join(dataDir, 'pglite.lock'), `${process.ppid}\n`);
    const error = await openDatabase({ dataDir, log: silentLog }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataDirInUseError);
    expect(error).toMatchObject({ pid: process.ppid });
    await rm(join(dataDir, 'pglite.lock'));
  });

  it('runs queries in its own thread, leaving the event loop free', async () => {
    const database = await openDatabase({ dataDir, log: silentLog });
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      await database.sql`select pg_sleep(0.5)`;
      clearInterval(timer);
      expect(ticks).toBeGreaterThan(20);
    } finally {
      await database.close();
    }
  });

  it('serves on a socket in a private directory that close removes', async () => {
    const before = new Set((await readdir(tmpdir())).filter((name) => name.startsWith('tally-pglite-')));
    const database = await openDatabase({ dataDir, log: silentLog });
    const created = (await readdir(tmpdir())).filter((name) => name.startsWith('tally-pglite-') && !before.has(name));
    expect(created).toHaveLength(1);
    const socketDir = join(tmpdir(), created[0]!);
    expect((await stat(socketDir)).mode & 0o777).toBe(0o700);
    await database.close();
    expect(existsSync(socketDir)).toBe(false);
  });
});
