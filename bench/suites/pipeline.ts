/**
 * The JavaScript cost of one `POST /v1/quota/consume` through Tally's real HTTP pipeline,
 * without the sockets: headers, body, key, router, actor, decision and answer, as the node
 * runs them, timed in a loop.
 *
 * Under load, the req/s of a 2-core machine moves by ±10 % between runs, which hides any
 * change to the hot path smaller than that; the fastest of this part's rounds moves by about
 * 5 %, so it is the figure to read when changing the hot path. It leaves out what uWebSockets.js and the
 * kernel do (parsing, string conversion, the syscalls: about 9 µs a request on the 2-core
 * development machine, the ceiling's whole cost), which is the same for every server.
 *
 * How: a real node runs in this process on a fresh embedded database and is seeded over
 * HTTP like the load bench's node. `uWebSockets.js`'s `App` is wrapped before the node
 * starts, so the consume route's handler is captured as the node installs it; the loop
 * then calls that handler with stand-ins for uWebSockets.js's request and response, which
 * hand over the headers and the body as uWebSockets.js would and measure the answer's
 * bytes (as uWebSockets.js converts them).
 *
 * Run as its own process: `node dist/bench/suites/pipeline.js` prints `PIPELINE_RESULT <json>`.
 * With `BENCH_ACCESS_LOG=1` the node runs with the access log on (TALLY_ACCESS_LOG=1, every
 * request), its log written to /dev/null as to stdout, asynchronously; `BENCH_ACCESS_LOG=sync`
 * writes each line at once instead (a write(2) per request, on the measured thread).
 */

import uws, { type HttpRequest, type HttpResponse } from 'uWebSockets.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { createLogger, loadConfig, TallyNode } from '../../src/node/index.js';
import { seed } from '../harness/seed.js';
import { BENCH_TOKENS_TIER, CONSUME_BODY, CONSUME_PATH, KEY_COUNT, TOKENS_BODY } from '../harness/workload.js';

const WARM_UP_CALLS = 300_000;
const CALLS_PER_ROUND = 300_000;
const ROUNDS = 11;

export interface PipelineResult {
  /** ns per consume in the fastest round: the one least disturbed by the rest of the machine. */
  nsPerConsume: number;
  /** ns per consume in the median round. */
  medianNsPerConsume: number;
  rounds: number[];
  /** Header and body bytes of one answer. */
  answerBytes: number;
  users: number;
  /** The same for a consume of a request and its tokens (TOKENS_BODY), which takes JSON.parse. */
  tokens: { nsPerConsume: number; medianNsPerConsume: number; rounds: number[] };
}

type Handler = (res: HttpResponse, req: HttpRequest) => void;

/** Wraps `uws.App` so that the handler installed for `path` is kept. Call before the node starts. */
function captureHandler(path: string): () => Handler {
  const exports = uws as unknown as { App: typeof uws.App };
  const realApp = exports.App;
  let captured: Handler | undefined;
  exports.App = (...args) => {
    const app = realApp(...args);
    const post = app.post.bind(app);
    app.post = (pattern, handler) => {
      if (pattern === path) captured = handler;
      return post(pattern, handler);
    };
    return app;
  };
  return () => {
    exports.App = realApp;
    if (captured === undefined) throw new Error(`the node installed no POST ${path}`);
    return captured;
  };
}

/**
 * Stand-ins for one request and its response. `getHeader` returns a new string each call,
 * as uWebSockets.js does; the body chunk is handed to `onData` after the handler returns;
 * the answer's strings are measured as UTF-8, which uWebSockets.js also does to send them.
 */
class Exchange {
  authorization = '';
  answerBytes = 0;
  failures = 0;
  private onChunk: ((chunk: ArrayBuffer, isLast: boolean) => void) | undefined;
  private readonly body: ArrayBuffer;

  constructor(body: string) {
    this.body = new TextEncoder().encode(body).buffer as ArrayBuffer;
  }

  readonly req = {
    getHeader: (name: string) => (name === 'authorization' ? ` ${this.authorization}`.slice(1) : name === 'content-type' ? 'application/json' : ''),
    getParameter: () => '',
    getMethod: () => 'post',
    getUrl: () => CONSUME_PATH,
  } as unknown as HttpRequest;

  readonly res = {
    onAborted: () => this.res,
    onData: (handler: (chunk: ArrayBuffer, isLast: boolean) => void) => {
      this.onChunk = handler;
      return this.res;
    },
    cork: (callback: () => void) => {
      callback();
      return this.res;
    },
    writeStatus: () => {
      this.failures++;
      return this.res;
    },
    writeHeader: (name: string, value: string) => {
      this.answerBytes = Buffer.byteLength(name) + Buffer.byteLength(value);
      return this.res;
    },
    end: (text: string) => {
      this.answerBytes += Buffer.byteLength(text);
      return this.res;
    },
    endWithoutBody: () => this.res,
  } as unknown as HttpResponse;

  run(handler: Handler, authorization: string): void {
    this.authorization = authorization;
    handler(this.res, this.req);
    this.onChunk!(this.body, true);
  }
}

export async function runPipeline(): Promise<PipelineResult> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tally-bench-pipeline-'));
  const adminToken = `bench-admin-${process.pid}-${Date.now()}`;
  const handlerOf = captureHandler(CONSUME_PATH);
  const accessLog = process.env.BENCH_ACCESS_LOG || undefined;
  if (accessLog !== undefined && accessLog !== '1' && accessLog !== 'sync') throw new Error(`BENCH_ACCESS_LOG must be 1 or sync, got "${accessLog}"`);
  const config = loadConfig({
    TALLY_HTTP_PORT: '0',
    TALLY_HTTP_HOST: '127.0.0.1',
    TALLY_DATA_DIR: dataDir,
    TALLY_ADMIN_TOKEN: adminToken,
    TALLY_LOG_LEVEL: 'warn',
    ...(accessLog === undefined ? {} : { TALLY_ACCESS_LOG: '1' }),
  });
  const destination = accessLog === undefined ? undefined : pino.destination({ dest: '/dev/null', sync: accessLog === 'sync' });
  const node = new TallyNode(config, createLogger({ level: config.logLevel, nodeId: config.nodeId, ...(destination === undefined ? {} : { destination }) }));
  try {
    await node.start();
    const handler = handlerOf();
    const url = `http://127.0.0.1:${node.port}`;
    const authorizations = (await seed(url, adminToken, KEY_COUNT)).map((key) => `Bearer ${key}`);
    const plain = new Exchange(CONSUME_BODY);
    const rounds = await timeRounds((i) => plain.run(handler, authorizations[i % authorizations.length]!));
    // The token budget moves onto resource "tokens": a gateway's consume charges both limits again.
    const tier = await fetch(`${url}/v1/admin/tiers/bench`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(BENCH_TOKENS_TIER),
    });
    if (tier.status !== 200) throw new Error(`PUT /v1/admin/tiers/bench answered ${tier.status}`);
    const gateway = new Exchange(TOKENS_BODY);
    const tokenRounds = await timeRounds((i) => gateway.run(handler, authorizations[i % authorizations.length]!));
    if (plain.failures + gateway.failures > 0) throw new Error(`${plain.failures + gateway.failures} consumes were not answered 200`);
    return {
      ...fastestAndMedian(rounds),
      rounds,
      answerBytes: plain.answerBytes,
      users: authorizations.length,
      tokens: { ...fastestAndMedian(tokenRounds), rounds: tokenRounds },
    };
  } finally {
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** ns per call of each round, after a warm-up. */
async function timeRounds(call: (i: number) => void): Promise<number[]> {
  for (let i = 0; i < WARM_UP_CALLS; i++) call(i);
  const rounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < CALLS_PER_ROUND; i++) call(i);
    rounds.push(Number(process.hrtime.bigint() - start) / CALLS_PER_ROUND);
    // Let the write-behind flush between rounds, as it would between requests.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return rounds;
}

function fastestAndMedian(rounds: readonly number[]): { nsPerConsume: number; medianNsPerConsume: number } {
  const sorted = [...rounds].sort((a, b) => a - b);
  return { nsPerConsume: sorted[0]!, medianNsPerConsume: sorted[Math.floor(sorted.length / 2)]! };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(`PIPELINE_RESULT ${JSON.stringify(await runPipeline())}`);
  process.exit(0);
}
