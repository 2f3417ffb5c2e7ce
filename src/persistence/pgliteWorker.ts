/**
 * The embedded database's own thread. PGlite executes SQL synchronously inside WebAssembly,
 * so on the main thread every write-behind flush would stall request handling for as long
 * as Postgres works. Here it runs beside the event loop, served on a loopback port by
 * pglite-socket; the main thread reaches it with postgres.js like any other server.
 *
 * Protocol: started with `workerData = { directory }`; posts `{ port }` once listening (or
 * `{ error }`); on the message `'close'` it stops serving, closes PGlite so every page is
 * on disk, posts `'closed'` and exits.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

async function serve(port: MessagePort, directory: string): Promise<void> {
  const pglite = await PGlite.create({ dataDir: directory });
  // PGlite runs one session: one socket connection.
  const server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: 0, maxConnections: 1 });
  await server.start();
  port.on('message', (message: unknown) => {
    if (message !== 'close') return;
    void (async () => {
      await server.stop();
      await pglite.close();
      port.postMessage('closed');
      process.exit(0);
    })();
  });
  port.postMessage({ port: Number(server.getServerConn().split(':')[1]) });
}

if (parentPort !== null) {
  serve(parentPort, (workerData as { directory: string }).directory).catch((error: unknown) => {
    parentPort!.postMessage({ error: error instanceof Error ? error.message : String(error) });
  });
}
