/**
 * The database connection: a postgres.js pool to `DATABASE_URL`, or, with no URL, embedded
 * PGlite (Postgres compiled to WebAssembly) under the data directory, run in its own thread
 * and served on a loopback socket by pglite-socket, so that the same driver and the same
 * SQL run against both and the embedded database never blocks request handling.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
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
  const worker = await startEmbedded(directory);
  const sql = postgres({ ...COMMON, host: '127.0.0.1', port: worker.port, username: 'postgres', database: 'postgres', max: 1, idle_timeout: 0 });
  options.log.info({ dataDir: directory }, 'embedded PGlite database');
  return {
    sql,
    kind: 'pglite',
    async close() {
      await sql.end({ timeout: 5 });
      await worker.close();
    },
  };
}

/**
 * The worker script. Node runs workers from JavaScript, so when this module is itself
 * TypeScript (under vitest) the compiled copy in dist/ is used; `npm test` builds first.
 */
function workerScript(): URL {
  const sibling = new URL('./pgliteWorker.js', import.meta.url);
  if (existsSync(sibling)) return sibling;
  const built = new URL('../../dist/src/persistence/pgliteWorker.js', import.meta.url);
  if (existsSync(built)) return built;
  throw new Error('pgliteWorker.js not found: run "npm run build"');
}

async function startEmbedded(directory: string): Promise<{ port: number; close(): Promise<void> }> {
  const worker = new Worker(workerScript(), { workerData: { directory } });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (message: { port?: number; error?: string }) =>
      message.port !== undefined ? resolve(message.port) : reject(new Error(`embedded database failed to start: ${message.error}`)),
    );
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`embedded database thread exited with ${code}`)));
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        worker.once('exit', () => resolve());
        worker.postMessage('close');
      }),
  };
}
