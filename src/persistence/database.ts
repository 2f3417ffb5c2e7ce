/**
 * The database connection: a postgres.js pool to `DATABASE_URL`, or, with no URL, embedded
 * PGlite (Postgres compiled to WebAssembly) under the data directory, served on a loopback
 * socket by pglite-socket so that the same driver and the same SQL run against both.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import postgres from 'postgres';
import type { Logger } from 'pino';

export type Sql = postgres.Sql;

export interface Database {
  sql: Sql;
  kind: 'postgres' | 'pglite';
  close(): Promise<void>;
}

export interface DatabaseOptions {
  url: string | undefined;
  dataDir: string;
  log: Logger;
  /** Pool size for a real Postgres. */
  max?: number;
}

const COMMON = {
  onnotice: () => {},
  connection: { application_name: 'tally' },
};

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url !== undefined) {
    const sql = postgres(options.url, { ...COMMON, max: options.max ?? 10, idle_timeout: 60 });
    return { sql, kind: 'postgres', close: () => sql.end({ timeout: 5 }) };
  }
  const directory = join(options.dataDir, 'pglite');
  await mkdir(directory, { recursive: true });
  const pglite = await PGlite.create({ dataDir: directory });
  // PGlite runs one session: one socket connection, one pooled connection.
  const server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: 0, maxConnections: 1 });
  await server.start();
  const [host, port] = server.getServerConn().split(':');
  const sql = postgres({ ...COMMON, host: host!, port: Number(port), username: 'postgres', database: 'postgres', max: 1, idle_timeout: 0 });
  options.log.info({ dataDir: directory }, 'embedded PGlite database');
  return {
    sql,
    kind: 'pglite',
    async close() {
      await sql.end({ timeout: 5 });
      await server.stop();
      await pglite.close();
    },
  };
}
