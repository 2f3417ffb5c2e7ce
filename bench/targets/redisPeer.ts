/**
 * The peer: what teams build instead of Tally. A stateless uWebSockets.js service that,
 * for every `POST /v1/quota/consume`, runs a GCRA check in Redis with a Lua script
 * (EVALSHA through ioredis `defineCommand`), keyed by the caller's API key: one network
 * round trip and one script per decision, every counter in one shared store.
 *
 * Run as its own process: `node dist/bench/targets/redisPeer.js <port> <redisUrl> <keyPrefix>
 * [autopipeline]`; it prints `listening <port>` once Redis answers and the port is open.
 * On SIGTERM or SIGINT it deletes every key under its prefix, then exits.
 */

import uws from 'uWebSockets.js';
import { pathToFileURL } from 'node:url';
import { Redis, type RedisOptions } from 'ioredis';
import { BENCH_RATE_LIMIT, CONSUME_PATH } from '../harness/workload.js';
import { listen } from './uws.js';

/**
 * GCRA (ITU-T I.371), the usual Redis form (as in redis-gcra and redis-cell), with the
 * same semantics as Tally's `gcra.ts`: emission interval T = period/limit, capacity
 * burst·T; a request of `cost` conforms when the new theoretical arrival time
 * tat' = max(tat, now) + cost·T is at most burst·T past now. A refusal stores nothing.
 *
 * Time comes from Redis's own clock, so that every instance of the service agrees. It is
 * counted in ms since 2024-01-01 rather than since 1970: a double then still resolves
 * ~15 ns, where a Unix-epoch tat in ms (~1.7e12) resolves only ~240 ns and would lose an
 * interval as short as the bench limit's 60 ns. `%.17g` stores the double exactly (Redis
 * turns Lua numbers into strings with only 14 digits).
 *
 * KEYS[1] = the key's tat; ARGV = interval (ms), burst, cost.
 * Returns {allowed (0|1), remaining, retry after (ms), reset at (Unix ms)}.
 */
export const GCRA_LUA = `
local EPOCH_S = 1704067200
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = (tonumber(clock[1]) - EPOCH_S) * 1000 + tonumber(clock[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local capacity = burst * interval
local new_tat = tat + cost * interval
if new_tat - now > capacity * (1 + 1e-9) then
  local remaining = math.max(0, math.floor((capacity - (tat - now)) / interval))
  return {0, remaining, math.max(1, math.ceil(new_tat - capacity - now)), EPOCH_S * 1000 + math.ceil(tat)}
end
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', math.ceil(new_tat - now) + 1)
local remaining = math.max(0, math.floor((capacity - (new_tat - now)) / interval + 1e-9))
return {1, remaining, 0, EPOCH_S * 1000 + math.ceil(new_tat)}
`;

type GcraReply = [allowed: number, remaining: number, retryAfterMs: number, resetAtMs: number];

interface GcraRedis extends Redis {
  gcra(key: string, intervalMs: number, burst: number, cost: number): Promise<GcraReply>;
}

const MAX_BODY_BYTES = 64 * 1024;
const INTERVAL_MS = BENCH_RATE_LIMIT.period_ms / BENCH_RATE_LIMIT.limit;
const BURST = BENCH_RATE_LIMIT.burst;

export interface RedisPeer {
  port: number;
  /** Deletes every key under the prefix and closes the Redis connection; returns how many were deleted. */
  close(): Promise<number>;
}

export async function startRedisPeer(port: number, redisUrl: string, prefix: string, options: { autoPipelining?: boolean } = {}): Promise<RedisPeer> {
  const redisOptions: RedisOptions = { enableAutoPipelining: options.autoPipelining ?? false, maxRetriesPerRequest: 1 };
  const redis = new Redis(redisUrl, redisOptions) as GcraRedis;
  redis.defineCommand('gcra', { numberOfKeys: 1, lua: GCRA_LUA });
  await redis.ping();

  const app = uws.App().post(CONSUME_PATH, function consume(res, req) {
    // Set before anything else: a client may go away while Redis is answering.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // `req` is valid only until this handler returns: read the header now.
    const authorization = req.getHeader('authorization');
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (aborted || size > MAX_BODY_BYTES) return;
      size += chunk.byteLength;
      if (size > MAX_BODY_BYTES) return reply(res, '413 Payload Too Large', '{"error":"body too large"}');
      // The ArrayBuffer is only valid during this callback: keep a copy.
      chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (!isLast) return;
      if (!authorization.startsWith('Bearer ') || authorization.length <= 7) {
        return reply(res, '401 Unauthorized', '{"error":"missing API key"}', 'www-authenticate', 'Bearer');
      }
      const cost = parseCost(Buffer.concat(chunks, size));
      if (cost === null) return reply(res, '400 Bad Request', '{"error":"cost must be an integer >= 1"}');
      redis.gcra(prefix + authorization.slice(7), INTERVAL_MS, BURST, cost).then(
        ([allowed, remaining, retryAfterMs, resetAtMs]) => {
          if (aborted) return;
          const body = `{"allowed":${allowed === 1},"remaining":${remaining},"reset_at":"${new Date(resetAtMs).toISOString()}"}`;
          if (allowed === 1) reply(res, '200 OK', body);
          else reply(res, '429 Too Many Requests', body, 'retry-after', String(Math.ceil(retryAfterMs / 1000)));
        },
        () => {
          if (!aborted) reply(res, '503 Service Unavailable', '{"error":"redis unavailable"}');
        },
      );
    });
  });

  const bound = await listen(app, port);
  return {
    port: bound,
    async close() {
      let deleted = 0;
      for await (const keys of redis.scanStream({ match: `${prefix}*`, count: 1000 }) as AsyncIterable<string[]>) {
        if (keys.length > 0) deleted += await redis.unlink(...keys);
      }
      await redis.quit();
      return deleted;
    },
  };
}

/** Corked: after an await the response is not, and status, headers and body should leave in one write. */
function reply(res: uws.HttpResponse, status: string, body: string, header?: string, value?: string): void {
  res.cork(() => {
    res.writeStatus(status);
    if (header !== undefined && value !== undefined) res.writeHeader(header, value);
    res.writeHeader('content-type', 'application/json').end(body);
  });
}

/** The consume body is `{cost?: int >= 1}`; an empty body means cost 1. Null when invalid. */
function parseCost(body: Buffer): number | null {
  if (body.length === 0) return 1;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const cost = (parsed as { cost?: unknown }).cost ?? 1;
  return Number.isSafeInteger(cost) && (cost as number) >= 1 ? (cost as number) : null;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [, , port = '0', url = 'redis://127.0.0.1:6379', prefix = `tallybench:${process.pid}:`, pipelining = 'false'] = process.argv;
  const peer = await startRedisPeer(Number(port), url, prefix, { autoPipelining: pipelining === 'true' });
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    peer.close().then(
      (deleted) => {
        console.error(`[redis peer] deleted ${deleted} keys under ${prefix}`);
        process.exit(0);
      },
      (error: unknown) => {
        console.error('[redis peer] cleanup failed:', error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  console.log(`listening ${peer.port}`);
}
