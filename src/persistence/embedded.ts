/**
 * Embedded Postgres for a single node with no `DATABASE_URL`: PGlite with its data under
 * `<dataDir>/pglite`, run in its own thread (pgliteWorker.ts) and served by pglite-socket,
 * so that postgres.js (the one driver) reaches it like any server.
 *
 * Three facts about these libraries shape this module:
 * - PGlite is one Postgres session. pglite-socket (0.2.x) accepts `maxConnections` clients
 *   but runs them all in that one session, so two clients would share transactions,
 *   prepared statements and settings. We allow exactly one.
 * - A client beyond the limit is closed during its startup, and postgres.js then retries
 *   the connection forever without reporting an error. The socket therefore lives in a
 *   fresh private directory (mode 0700), where no other local user or stray process can
 *   connect, take the only slot, or reach an unauthenticated database.
 * - PGlite does not lock its data directory: two processes opening it would corrupt it
 *   (`tally migrate` while `tally start` runs, say), so we hold a lock file next to it.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { lockDataDir } from './dataDirLock.js';
import { type PgliteWorkerMessage, startPgliteWorker } from './pgliteWorker.js';

/** How long close() waits for PGlite to shut down before stopping its thread. */
const CLOSE_TIMEOUT_MS = 30_000;

export interface EmbeddedPostgres {
  /** How postgres.js reaches it: a unix socket path, or a loopback port on Windows. */
  address: { path: string } | { host: string; port: number };
  close(): Promise<void>;
}

export async function startEmbedded(dataDir: string, log: Logger): Promise<EmbeddedPostgres> {
  const directory = join(dataDir, 'pglite');
  await mkdir(directory, { recursive: true });
  const lock = await lockDataDir(join(dataDir, 'pglite.lock'));
  let socketDir: string | null = null;
  let worker: Worker | undefined;
  try {
    const started = Date.now();
    socketDir = process.platform === 'win32' ? null : await mkdtemp(join(tmpdir(), 'tally-pglite-'));
    const socketPath = socketDir === null ? null : join(socketDir, '.s.PGSQL.5432');
    worker = startPgliteWorker({ dataDir: directory, socketPath });
    const exited = new Promise<number>((resolve) => worker!.once('exit', resolve));
    const served = await whenServing(worker, exited);
    log.info({ dataDir: directory, ms: Date.now() - started }, 'embedded PGlite database');

    let closing = false;
    worker.on('error', (error) => log.error({ err: error }, 'embedded database thread failed'));
    void exited.then((code) => {
      if (!closing) log.error({ code }, 'embedded database thread ended unexpectedly');
    });
    const thread = worker;
    const dir = socketDir;
    return {
      address: socketPath === null ? { host: '127.0.0.1', port: Number(served.split(':')[1]) } : { path: socketPath },
      async close() {
        closing = true;
        try {
          thread.on('message', (message: PgliteWorkerMessage) => {
            if (message.type === 'failed') log.error({ error: message.error }, 'embedded database did not close cleanly');
          });
          thread.postMessage('close');
          const timer = setTimeout(() => {
            log.error({ timeoutMs: CLOSE_TIMEOUT_MS }, 'embedded database did not close in time; stopping its thread');
            void thread.terminate();
          }, CLOSE_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        } finally {
          if (dir !== null) await rm(dir, { recursive: true, force: true });
          await lock.release();
        }
      },
    };
  } catch (error) {
    await worker?.terminate();
    if (socketDir !== null) await rm(socketDir, { recursive: true, force: true });
    await lock.release();
    throw error;
  }
}

/** The server address the worker reports once PGlite is open and listening. */
function whenServing(worker: Worker, exited: Promise<number>): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    worker.once('message', (message: PgliteWorkerMessage) => {
      if (message.type === 'ready') resolve(message.address);
      else reject(new Error(`embedded database failed to start: ${message.error}`));
    });
    worker.once('error', reject);
    void exited.then((code) => reject(new Error(`embedded database thread exited (${code}) while starting`)));
  });
}
