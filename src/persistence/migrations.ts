/**
 * Schema migrations: numbered SQL files (`NNN_name.sql`) applied in order, each once, in
 * one transaction holding an advisory lock, so that nodes starting together take turns
 * instead of racing, and a failing file leaves the schema as it was.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './database.js';

const LOCK_KEY = 7_294_125_001; // any constant, the same on every node

/** The repository's `migrations/` folder, from src/ (tests) or dist/src/ (built). */
export function defaultMigrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'migrations')) && existsSync(join(dir, 'package.json'))) return join(dir, 'migrations');
    dir = dirname(dir);
  }
  throw new Error('cannot find the migrations folder');
}

export async function migrate(sql: Sql, dir = defaultMigrationsDir()): Promise<{ applied: string[] }> {
  const files = (await readdir(dir)).filter((file) => /^\d+_[\w-]+\.sql$/.test(file)).sort();
  const applied: string[] = [];
  await sql.begin(async (tx) => {
    // Transaction-scoped: released at commit, so a crashed migrator cannot hold it.
    await tx`select pg_advisory_xact_lock(${LOCK_KEY})`;
    await tx`create table if not exists schema_migrations (version integer primary key, name text not null, applied_at timestamptz not null default now())`;
    const done = new Set((await tx<{ version: number }[]>`select version from schema_migrations`).map((row) => row.version));
    for (const file of files) {
      const version = Number.parseInt(file, 10);
      if (done.has(version)) continue;
      await tx.savepoint(async (step) => {
        await step.unsafe(await readFile(join(dir, file), 'utf8'));
        await step`insert into schema_migrations (version, name) values (${version}, ${file})`;
      });
      applied.push(file);
    }
  });
  return { applied };
}
