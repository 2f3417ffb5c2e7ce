/**
 * The migrations runner: each file once, in order, in its own transaction, and safely when
 * several nodes start at the same moment.
 */
import { existsSync } from 'node:fs';
import { copyFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultMigrationsDir, MigrationError, migrate, openDatabase } from '../../src/persistence/index.js';
import { DATABASE_KINDS, openTestDatabase, silentLog, type TestDatabase } from '../support/database.js';
import { createTestDatabase } from '../support/postgres.js';
import { makeTempDir } from '../support/tmp.js';

const FILES = [
  '001_init.sql',
  '002_default_tiers.sql',
  '003_fence_refuses_delete.sql',
  '004_hostile_input.sql',
  '005_token_budgets_on_tokens.sql',
  '006_fence_per_statement.sql',
  '007_state_sequence.sql',
  '008_database_incarnation.sql',
  '009_usage_history.sql',
  '010_compact_state.sql',
  '011_room_for_last_use.sql',
  '012_fence_locks_and_checks_at_once.sql',
  '013_room_for_every_row_of_a_page.sql',
];

it('finds the repository’s migrations folder', () => {
  const dir = defaultMigrationsDir();
  expect(existsSync(join(dir, '001_init.sql'))).toBe(true);
  expect(existsSync(join(dir, '..', 'package.json'))).toBe(true);
});

describe.each(DATABASE_KINDS)('on %s', (kind) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await openTestDatabase(kind, { migrate: false });
  });
  afterAll(() => db?.cleanup());

  it('applies every file once, in order, and records it', async () => {
    expect(await migrate(db.database.sql)).toEqual({ applied: FILES });
    expect(await migrate(db.database.sql)).toEqual({ applied: [] });
    const rows = await db.database.sql<{ version: number; name: string; applied_at: Date }[]>`
      select version, name, applied_at from schema_migrations order by version`;
    expect(rows.map((row) => [row.version, row.name])).toEqual([
      [1, '001_init.sql'],
      [2, '002_default_tiers.sql'],
      [3, '003_fence_refuses_delete.sql'],
      [4, '004_hostile_input.sql'],
      [5, '005_token_budgets_on_tokens.sql'],
      [6, '006_fence_per_statement.sql'],
      [7, '007_state_sequence.sql'],
      [8, '008_database_incarnation.sql'],
      [9, '009_usage_history.sql'],
      [10, '010_compact_state.sql'],
      [11, '011_room_for_last_use.sql'],
      [12, '012_fence_locks_and_checks_at_once.sql'],
      [13, '013_room_for_every_row_of_a_page.sql'],
    ]);
    expect(rows[0]!.applied_at).toBeInstanceOf(Date);
  });

  it('leaves the connection usable afterwards', async () => {
    const [row] = await db.database.sql<{ n: number }[]>`select count(*) as n from tiers`;
    expect(row!.n).toBe(4);
  });
});

describe.each(DATABASE_KINDS)('the token-budget migration on %s', (kind) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await openTestDatabase(kind, { migrate: false });
  });
  afterAll(() => db?.cleanup());

  it('moves the seeded token budgets onto resource "tokens", and leaves tiers an operator edited alone', async () => {
    const before = await makeTempDir();
    try {
      for (const file of FILES.slice(0, 4)) await copyFile(join(defaultMigrationsDir(), file), join(before, file));
      await migrate(db.database.sql, before);
    } finally {
      await rm(before, { recursive: true, force: true });
    }
    const sql = db.database.sql;
    const edited = [
      { name: 'requests', kind: 'rate', limit: 700, period_ms: 60000, burst: 50 },
      { name: 'tokens', kind: 'budget', limit: 2000000, period: 'month' },
    ];
    await sql`update tiers set limits = ${sql.json(edited)} where name = 'pro'`;
    expect(await migrate(sql)).toEqual({ applied: FILES.slice(4) });
    const rows = await sql<{ name: string; limits: { name: string; resource?: string; limit: number }[] }[]>`select name, limits from tiers order by name`;
    const tiers = Object.fromEntries(rows.map((row) => [row.name, row.limits]));
    expect(tiers.free).toEqual([
      { name: 'requests', kind: 'rate', limit: 60, period_ms: 60000, burst: 20 },
      { name: 'tokens', kind: 'budget', limit: 100000, period: 'month', resource: 'tokens' },
    ]);
    expect(tiers.enterprise!.map((limit) => limit.resource)).toEqual([undefined, 'tokens']);
    expect(tiers.pro).toEqual(edited);
    expect(tiers.anonymous).toEqual([{ name: 'requests', kind: 'rate', limit: 60, period_ms: 60000, burst: 20 }]);
  });
});

describe('on a fresh Postgres database', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function freshDatabase() {
    const created = await createTestDatabase();
    cleanups.push(created.drop);
    const open = async () => {
      const dataDir = await makeTempDir(); // unused by Postgres, required by openDatabase
      const database = await openDatabase({ url: created.url, dataDir, log: silentLog });
      cleanups.push(
        () => database.close(),
        () => rm(dataDir, { recursive: true, force: true }),
      );
      return database;
    };
    return { url: created.url, open };
  }

  it('lets concurrent starters apply each file exactly once', async () => {
    const fresh = await freshDatabase();
    const starters = await Promise.all([fresh.open(), fresh.open(), fresh.open()]);
    const results = await Promise.all(starters.map((database) => migrate(database.sql)));
    expect(results.flatMap((result) => result.applied).sort()).toEqual(FILES);
    const [count] = await starters[0]!.sql<{ n: number }[]>`select count(*) as n from schema_migrations`;
    expect(count!.n).toBe(FILES.length);
  });

  it('rolls a failing file back, records the ones before it, and releases the lock', async () => {
    const fresh = await freshDatabase();
    const database = await fresh.open();
    const dir = await makeTempDir('tally-migrations-');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, '001_first.sql'), 'create table first (id int);\ncreate index first_id on first (id);');
    await writeFile(join(dir, '002_broken.sql'), 'create table second (id int);\nselect 1 / 0;');
    await writeFile(join(dir, 'README.md'), 'not a migration');
    const error = await migrate(database.sql, dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationError);
    expect(error).toMatchObject({ file: '002_broken.sql', cause: { code: '22012' } });
    const tables = await database.sql<{ name: string }[]>`
      select table_name as name from information_schema.tables where table_name in ('first', 'second')`;
    expect(tables.map((row) => row.name)).toEqual(['first']);

    // Fixed, it applies from where it stopped; another connection can take the lock.
    await writeFile(join(dir, '002_broken.sql'), 'create table second (id int);');
    const again = await fresh.open();
    expect(await migrate(again.sql, dir)).toEqual({ applied: ['002_broken.sql'] });
  });

  it('refuses two files with one version', async () => {
    const fresh = await freshDatabase();
    const database = await fresh.open();
    const dir = await makeTempDir('tally-migrations-');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, '001_a.sql'), 'select 1;');
    await writeFile(join(dir, '1_b.sql'), 'select 1;');
    await expect(migrate(database.sql, dir)).rejects.toThrow(/share version 1/);
  });
});
