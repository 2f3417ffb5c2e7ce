/**
 * The ceiling: what uWebSockets.js does on this machine with no work at all, and so the
 * most any uWebSockets.js service can hope for. `POST /v1/quota/consume` reads the body to
 * its end, as any POST handler must, and answers a constant small JSON body.
 *
 * The shaped ceiling does no work either, but reads the request headers Tally reads and
 * writes an answer of the shape Tally's contract requires — the rate-limit headers, the
 * request id, two limits in the body — so the difference between the two ceilings is what
 * the answer's size costs, and the difference between the shaped ceiling and Tally is
 * what Tally's own work costs.
 *
 * Run as its own process: `node dist/bench/targets/ceiling.js <port> [plain|shaped]` (port 0 for
 * any free port); it prints `listening <port>` once it accepts connections.
 */

import uws from 'uWebSockets.js';
import { pathToFileURL } from 'node:url';
import { CONSUME_PATH } from '../harness/workload.js';
import { listen } from './uws.js';

const REPLY = '{"allowed":true,"limits":[]}';

/** A consume answer of Tally's for the bench tier, as it goes on the wire. */
const SHAPED_REPLY =
  '{"allowed":true,"limits":[{"name":"requests","kind":"rate","limit":1000000000,"remaining":999999998,"reset_at":"2026-11-22T15:19:32.869Z"},' +
  '{"name":"tokens","kind":"budget","limit":1000000000000000,"remaining":999999999996000,"reset_at":"2026-12-01T00:00:00.000Z"}]}';
const SHAPED_HEADERS =
  '\r\nRateLimit-Policy: "requests";q=1000000000;w=60\r\nRateLimit: "requests";r=999999998;t=1' +
  '\r\nX-RateLimit-Limit: 1000000000\r\nX-RateLimit-Remaining: 999999998\r\nX-RateLimit-Reset: 1763824773\r\ncontent-type: application/json';

export type CeilingShape = 'plain' | 'shaped';

export function startCeiling(port: number, shape: CeilingShape = 'plain'): Promise<number> {
  return listen(shape === 'plain' ? uws.App().post(CONSUME_PATH, constantReply) : uws.App().post(CONSUME_PATH, shapedReply), port);
}

function constantReply(res: uws.HttpResponse): void {
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
}

let answered = 0;

function shapedReply(res: uws.HttpResponse, req: uws.HttpRequest): void {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  // The headers Tally reads for a consume; their values are not used.
  req.getHeader('authorization');
  req.getHeader('content-type');
  req.getHeader('idempotency-key');
  req.getHeader('x-request-id');
  res.onData((_chunk, isLast) => {
    if (!isLast || aborted) return;
    // Tally writes its headers as one block after the request id (see src/http/respond.ts).
    const head = `bench-${(++answered).toString(36)}${SHAPED_HEADERS}`;
    res.cork(() => {
      res.writeHeader('x-request-id', head).end(SHAPED_REPLY);
    });
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const shape = process.argv[3] ?? 'plain';
  if (shape !== 'plain' && shape !== 'shaped') throw new Error(`unknown ceiling shape "${shape}" (plain or shaped)`);
  const port = await startCeiling(Number(process.argv[2] ?? 0), shape);
  // The parent stops us with SIGTERM (or the terminal with SIGINT): nothing to clean up.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
  console.log(`listening ${port}`);
}
