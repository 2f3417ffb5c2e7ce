/**
 * Schema migrations: numbered SQL files (`NNN_name.sql`) applied in order, each once and in
 * its own transaction, recorded in `schema_migrations`. The whole run holds a session-level
 * advisory lock, so nodes starting together take turns: the first applies, the others wait
 * and then find nothing left to do.
 *
 * Since the runner wraps each file in a transaction, a file must not contain BEGIN/COMMIT
 * or statements that refuse a transaction (CREATE INDEX CONCURRENTLY, VACUUM).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './database.js';
import { MigrationError } from './errors.js';

/** Any constant, the same on every node: "tally" in ASCII. */
const LOCK_KEY = 0x74616c6c79;
const FILE_NAME = /^(\d+)_[\w-]+\.sql$/;

/** The repository's `migrations/` folder, found from src/ (tests) or dist/src/ (built). */
export function defaultMigrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'migrations')) && existsSync(join(dir, 'package.json'))) return join(dir, 'migrations');
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no migrations/ folder next to a package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

interface MigrationFile {
  version: number;
  name: string;
}

async function listMigrations(dir: string): Promise<MigrationFile[]> {
  const files: MigrationFile[] = [];
  for (const name of await readdir(dir)) {
    const match = FILE_NAME.exec(name);
    if (match !== null) files.push({ version: Number(match[1]), name });
  }
  files.sort((a, b) => a.version - b.version);
  for (let i = 1; i < files.length; i++) {
    if (files[i]!.version === files[i - 1]!.version)
      throw new Error(`two migrations share version ${files[i]!.version}: ${files[i - 1]!.name}, ${files[i]!.name}`);
  }
  return files;
}

export async function migrate(sql: Sql, dir = defaultMigrationsDir()): Promise<{ applied: string[] }> {
  const files = await listMigrations(dir);
  const applied: string[] = [];
  // A session lock needs one connection throughout. A reserved connection has no `begin`
  // (postgres.js types claim it does), hence the explicit begin/commit below.
  const connection = await sql.reserve();
  try {
    await connection`select pg_advisory_lock(${LOCK_KEY}::bigint)`;
    try {
      await connection`
        create table if not exists schema_migrations (
          version integer primary key,
          name text not null,
          applied_at timestamptz not null default now()
        )`;
      const done = new Set((await connection<{ version: number }[]>`select version from schema_migrations`).map((row) => row.version));
      for (const file of files) {
        if (done.has(file.version)) continue;
        const text = await readFile(join(dir, file.name), 'utf8');
        await connection`begin`;
        try {
          // No parameters: the simple protocol, which runs a file of many statements.
          await connection.unsafe(text);
          await connection`insert into schema_migrations (version, name) values (${file.version}, ${file.name})`;
          await connection`commit`;
        } catch (error) {
          // The migration's own error is the one to report; a broken connection rolls back by itself.
          await connection`rollback`.catch(() => undefined);
          throw new MigrationError(file.name, { cause: error });
        }
        applied.push(file.name);
      }
    } finally {
      // A session's advisory locks end with the session: an unlock that fails leaves nothing held for long.
      await connection`select pg_advisory_unlock(${LOCK_KEY}::bigint)`.catch(() => undefined);
    }
  } finally {
    connection.release();
  }
  return { applied };
}

/** The database's incarnation (migration 008): made once, and kept for the life of the database. */
export async function readIncarnation(sql: Sql): Promise<string> {
  const [row] = await sql<{ incarnation: string }[]>`select incarnation from database_incarnation`;
  if (row === undefined) throw new Error('the database has no incarnation: run the migrations first');
  return row.incarnation;
}
