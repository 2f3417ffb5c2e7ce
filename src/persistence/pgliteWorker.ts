/**
 * The embedded database's own thread. PGlite executes SQL synchronously inside WebAssembly,
 * so on the main thread every write-behind flush would stall request handling for as long
 * as Postgres works. In a worker it runs beside the event loop, served by pglite-socket;
 * the main thread reaches it with postgres.js like any other server.
 *
 * The worker's code is JavaScript in a string, started from a `data:` URL: Node 20 cannot
 * run a TypeScript file in a worker, and a compiled copy from dist/ would be stale (or
 * missing) when tests run the sources. Packages are imported by the file URLs the main
 * thread resolves, since a `data:` module has no node_modules to search.
 */
import { Worker } from 'node:worker_threads';

export interface PgliteWorkerData {
  /** PGlite's data directory. */
  dataDir: string;
  /** Where to listen: a unix socket path, or a loopback port when null. */
  socketPath: string | null;
  modules: { pglite: string; pgliteSocket: string };
}

/** What the worker posts: once started (or not), and when closing fails. */
export type PgliteWorkerMessage = { type: 'ready'; address: string } | { type: 'failed'; error: string };

const SOURCE = `
import { parentPort, workerData } from 'node:worker_threads';
const { PGlite } = await import(workerData.modules.pglite);
const { PGLiteSocketServer } = await import(workerData.modules.pgliteSocket);
const describe = (error) => String(error && error.stack ? error.stack : error);
let db;
let server;
try {
  db = await PGlite.create({ dataDir: workerData.dataDir });
  // One client: PGlite is one session, which pglite-socket would share between clients.
  server = new PGLiteSocketServer(workerData.socketPath === null
    ? { db, host: '127.0.0.1', port: 0, maxConnections: 1 }
    : { db, path: workerData.socketPath, maxConnections: 1 });
  await server.start();
  parentPort.postMessage({ type: 'ready', address: server.getServerConn() });
} catch (error) {
  parentPort.postMessage({ type: 'failed', error: describe(error) });
  // The start's failure has been reported to the parent; the process exits next, closing everything.
  await db?.close().catch(() => {});
  process.exit(1);
}
parentPort.on('message', async (message) => {
  if (message !== 'close') return;
  try {
    await server.stop();
    await db.close(); // a clean shutdown of the Postgres inside, so no recovery at next start
    process.exit(0);
  } catch (error) {
    parentPort.postMessage({ type: 'failed', error: describe(error) });
    process.exit(1);
  }
});
`;

export function startPgliteWorker(data: Omit<PgliteWorkerData, 'modules'>): Worker {
  const workerData: PgliteWorkerData = {
    ...data,
    modules: { pglite: import.meta.resolve('@electric-sql/pglite'), pgliteSocket: import.meta.resolve('@electric-sql/pglite-socket') },
  };
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(SOURCE)}`), { workerData });
}
