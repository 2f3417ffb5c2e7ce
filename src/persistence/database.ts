/**
 * The database connection: a postgres.js pool to `DATABASE_URL`, or, with no URL, embedded
 * PGlite (Postgres compiled to WebAssembly) under the data directory, in its own thread and
 * reached by the same driver over a private socket, so that one set of SQL and migrations
 * serves both and the embedded database never blocks request handling.
 */

import type { Logger } from 'pino';
import postgres from 'postgres';
import { startEmbedded } from './embedded.js';

export type Sql = postgres.Sql;

export interface Database {
  sql: Sql;
  kind: 'postgres' | 'pglite';
  /** Ends the pool; for PGlite also stops its socket and closes it, so its data is on disk. */
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** A postgres:// URL; without one, embedded PGlite runs under `dataDir`. */
  url?: string;
  dataDir: string;
  log: Logger;
  /** Pool size for a real Postgres (PGlite always gets one connection). */
  max?: number;
}

/**
 * postgres.js returns int8 (bigint, count(*)) as a string by default. Tally's int8 values
 * are epochs and counts, far below 2^53, so they are parsed as numbers.
 */
const int8AsNumber = {
  to: 20,
  from: [20],
  serialize: (value: number) => String(value),
  parse: (value: string) => Number(value),
} satisfies postgres.PostgresType<number>;

function driverOptions(log: Logger) {
  return {
    types: { int8: int8AsNumber },
    connection: { application_name: 'tally' },
    // Notices such as "relation already exists, skipping" are not worth an operator's time.
    onnotice: (notice: postgres.Notice) => log.debug({ notice: notice.message }, 'postgres notice'),
  };
}

/**
 * Seconds before the pool tries a failed connection again. The driver's default grows as 3^n
 * up to 20 s, shared by the whole pool, so after a 10 s outage a node would wait up to 20 s
 * more before it saw the database back; here the wait doubles from 50 ms and stops at 1 s.
 */
function reconnectDelay(retries: number): number {
  return Math.min(0.05 * 2 ** retries, 1) * (0.5 + Math.random() / 2);
}

/**
 * postgres.js picks a parameter's serializer when a query is built, and learns the array
 * types from the server on its first connection: until then `sql.array(…)` is sent as
 * `1,2,3` and refused ("malformed array literal"). One query at open fetches them before any
 * caller builds one. A database that cannot be reached fails the open.
 */
async function fetchTypes(sql: Sql): Promise<void> {
  try {
    await sql`select 1`;
  } catch (error) {
    // The first error is why the database cannot be used; a failure to close adds nothing.
    await sql.end({ timeout: 1 }).catch(() => undefined);
    throw error;
  }
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const { log } = options;
  if (options.url !== undefined) {
    // A database that does not answer a connection within 5 s counts as unreachable (the default is 30 s).
    const sql = postgres(options.url, { ...driverOptions(log), max: options.max ?? 10, idle_timeout: 60, connect_timeout: 5, backoff: reconnectDelay });
    await fetchTypes(sql);
    return { sql, kind: 'postgres', close: () => sql.end({ timeout: 5 }) };
  }
  const embedded = await startEmbedded(options.dataDir, log);
  // Every option is given so that no PG* environment variable (which postgres.js reads as a
  // fallback) can redirect or reconfigure this connection. One connection: PGlite is one
  // session, and pglite-socket refuses a second client.
  const sql = postgres({
    ...driverOptions(log),
    ...embedded.address,
    username: 'postgres',
    password: '',
    database: 'postgres',
    ssl: false,
    max: 1,
    idle_timeout: 0,
    max_lifetime: 0,
    connect_timeout: 10,
  });
  await fetchTypes(sql).catch(async (error: unknown) => {
    await embedded.close();
    throw error;
  });
  return {
    sql,
    kind: 'pglite',
    async close() {
      await sql.end({ timeout: 5 });
      await embedded.close();
    },
  };
}
