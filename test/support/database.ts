/**
 * Opens a Tally database of either kind for a test: a fresh database on the real Postgres
 * server, or embedded PGlite in a fresh temporary directory. `cleanup` closes it and drops
 * or removes what it created.
 */
import { rm } from 'node:fs/promises';
import pino from 'pino';
import { type Database, migrate, openDatabase } from '../../src/persistence/index.js';
import { createTestDatabase } from './postgres.js';
import { makeTempDir } from './tmp.js';

export type DatabaseKind = Database['kind'];
export const DATABASE_KINDS: readonly DatabaseKind[] = ['postgres', 'pglite'];

export const silentLog = pino({ level: 'silent' });

export interface TestDatabase {
  database: Database;
  /** The PGlite data directory (a fresh temporary one for Postgres too). */
  dataDir: string;
  /** Set for Postgres. */
  url: string | undefined;
  cleanup(): Promise<void>;
}

export async function openTestDatabase(kind: DatabaseKind, options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const dataDir = await makeTempDir();
  const created = kind === 'postgres' ? await createTestDatabase() : undefined;
  const database = await openDatabase({ url: created?.url, dataDir, log: silentLog });
  if (options.migrate !== false) await migrate(database.sql);
  let cleaned = false;
  return {
    database,
    dataDir,
    url: created?.url,
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      await database.close();
      await created?.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
