/**
 * The peer: what teams build instead of Tally — a stateless uWebSockets.js service that
 * runs a GCRA check per request in Redis with a Lua script (EVALSHA), keyed by API key.
 * Run as a child process: `node redisPeer.js <port> <redisUrl> <keyPrefix>`.
 */
import { Redis } from 'ioredis';
import uws from 'uWebSockets.js';

// Standard GCRA in Lua (times in ms from Redis's own clock, so every replica agrees).
// KEYS[1] key; ARGV: emission interval ms, burst, cost. Returns {allowed, remaining, retry_ms, reset_ms}.
const GCRA = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, math.floor((burst * interval - (tat - now)) / interval), allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, math.floor((burst * interval - (new_tat - now)) / interval), 0, new_tat - now}
`;

interface GcraRedis extends Redis {
  gcra(key: string, interval: number, burst: number, cost: number): Promise<[number, number, number, number]>;
}

export async function startRedisPeer(port: number, redisUrl: string, prefix: string): Promise<{ port: number; redis: Redis }> {
  const redis = new Redis(redisUrl) as GcraRedis;
  redis.defineCommand('gcra', { numberOfKeys: 1, lua: GCRA });
  // The same limit as the bench tier's rate limit: 10^9 a minute, burst 10^6.
  const interval = 60_000 / 1_000_000_000;
  const burst = 1_000_000;
  const app = uws.App().post('/v1/quota/consume', (res, req) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const authorization = req.getHeader('authorization'); // before any await
    const chunks: Buffer[] = [];
    res.onData((chunk, isLast) => {
      chunks.push(Buffer.from(chunk.slice(0)));
      if (!isLast) return;
      let cost = 1;
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { cost?: number };
        if (Number.isSafeInteger(body.cost) && body.cost! >= 1) cost = body.cost!;
      } catch {
        // keep cost 1
      }
      const key = prefix + authorization.slice(7);
      redis.gcra(key, interval, burst, cost).then(
        ([allowed, remaining, retryMs, resetMs]) => {
          if (aborted) return;
          const now = Date.now();
          const body = JSON.stringify({ allowed: allowed === 1, remaining, reset_at: new Date(now + Number(resetMs)).toISOString() });
          res.cork(() => {
            if (allowed === 1) res.writeStatus('200 OK');
            else res.writeStatus('429 Too Many Requests').writeHeader('retry-after', String(Math.max(1, Math.ceil(Number(retryMs) / 1000))));
            res.writeHeader('content-type', 'application/json').end(body);
          });
        },
        () => {
          if (!aborted) res.cork(() => res.writeStatus('503 Service Unavailable').end());
        },
      );
    });
  });
  const bound = await new Promise<number>((resolve, reject) =>
    app.listen('127.0.0.1', port, (socket) => (socket === false ? reject(new Error('cannot listen')) : resolve(uws.us_socket_local_port(socket)))),
  );
  return { port: bound, redis };
}

if (process.argv[1]?.endsWith('redisPeer.js')) {
  const [, , port = '0', url = 'redis://127.0.0.1:6379', prefix = `tallybench:${process.pid}:`] = process.argv;
  const { port: bound, redis } = await startRedisPeer(Number(port), url, prefix);
  const cleanup = async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    process.exit(0);
  };
  process.once('SIGTERM', () => void cleanup());
  console.log(`listening ${bound}`);
}
