/**
 * The ceiling: what uWebSockets.js does on this machine with no work at all, and so the
 * most any uWebSockets.js service can hope for. `POST /v1/quota/consume` reads the body to
 * its end, as any POST handler must, and answers a constant small JSON body.
 *
 * Run as its own process: `node dist/bench/ceiling.js <port>` (0 for any free port); it
 * prints `listening <port>` once it accepts connections.
 */
import { pathToFileURL } from 'node:url';
import uws from 'uWebSockets.js';
import { listen } from './uws.js';
import { CONSUME_PATH } from './workload.js';

const REPLY = '{"allowed":true,"limits":[]}';

export function startCeiling(port: number): Promise<number> {
  const app = uws.App().post(CONSUME_PATH, function constantReply(res) {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // The chunk is not kept, so it needs no copy: only the end of the body matters here.
    res.onData((_chunk, isLast) => {
      if (!isLast || aborted) return;
      res.cork(() => {
        res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(REPLY);
      });
    });
  });
  return listen(app, port);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = await startCeiling(Number(process.argv[2] ?? 0));
  // The parent stops us with SIGTERM (or the terminal with SIGINT): nothing to clean up.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
  console.log(`listening ${port}`);
}
