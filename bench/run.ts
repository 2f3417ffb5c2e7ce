/**
 * `npm run bench`: every target driven by the same load generator with the same settings,
 * one after the other, in one run, then the micro benchmarks. Prints a table and ratios.
 * BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 50), BENCH_ONLY=ceiling,redis,tally,micro.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startChild, stopAll } from './children.js';
import { ensureWrk, runLoad, type LoadResult } from './load.js';
import { startTally } from './tally.js';

const duration = Number(process.env.BENCH_DURATION ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const only = new Set((process.env.BENCH_ONLY ?? 'ceiling,redis,tally,micro').split(','));
const USERS = 200;
const here = import.meta.dirname;

async function measure(name: string, url: string, authorizations: string[]): Promise<LoadResult> {
  await runLoad({ url, authorizations, durationSeconds: 2, connections }); // warm-up
  const result = await runLoad({ url, authorizations, durationSeconds: duration, connections });
  console.error(`[bench] ${name}: ${Math.round(result.rps)} req/s`);
  return result;
}

async function main(): Promise<void> {
  ensureWrk();
  const results = new Map<string, LoadResult>();
  let keys = Array.from({ length: USERS }, () => `Bearer tk_${randomBytes(24).toString('base64url')}`);

  if (only.has('tally')) {
    console.error(`[bench] starting tally and seeding ${USERS} users`);
    const tally = await startTally(USERS);
    keys = tally.keys.map((key) => `Bearer ${key}`);
    results.set('tally consume', await measure('tally', `${tally.url}/v1/quota/consume`, keys));
    await tally.child.stop();
  }
  if (only.has('ceiling')) {
    const { child, match } = await startChild([join(here, 'ceiling.js'), '0'], {}, /listening (\d+)/);
    results.set('ceiling (uWS)', await measure('ceiling', `http://127.0.0.1:${match[1]}/v1/quota/consume`, keys));
    await child.stop();
  }
  if (only.has('redis')) {
    const prefix = `tallybench:${process.pid}:`;
    const { child, match } = await startChild([join(here, 'redisPeer.js'), '0', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix], {}, /listening (\d+)/);
    results.set('redis-lua peer', await measure('redis', `http://127.0.0.1:${match[1]}/v1/quota/consume`, keys));
    await child.stop();
  }

  console.log(`\nload: wrk -t1 -c${connections} -d${duration}s, POST /v1/quota/consume {"cost":1}, ${USERS} API keys rotated, keep-alive`);
  console.log('target            req/s      p50 ms   p99 ms   non-2xx  socket errors');
  for (const [name, r] of results) {
    console.log(`${name.padEnd(16)}  ${String(Math.round(r.rps)).padStart(8)}  ${r.p50Ms.toFixed(3).padStart(7)}  ${r.p99Ms.toFixed(3).padStart(7)}  ${String(r.non2xx).padStart(7)}  ${String(r.socketErrors).padStart(6)}`);
  }
  const tally = results.get('tally consume');
  const ceiling = results.get('ceiling (uWS)');
  const redis = results.get('redis-lua peer');
  if (tally !== undefined && ceiling !== undefined) console.log(`ratio tally/ceiling = ${(tally.rps / ceiling.rps).toFixed(2)} (target >= 0.8)`);
  if (tally !== undefined && redis !== undefined) console.log(`ratio tally/redis   = ${(tally.rps / redis.rps).toFixed(2)} (target >= 3)`);

  if (only.has('micro')) {
    const { match } = await startChild(['--expose-gc', join(here, 'micro.js')], {}, /^(\{.*\})$/);
    const micro = JSON.parse(match[1]!) as { decisionEngineNs: number; decisionActorNs: number; heapBytesPerActor: number };
    console.log(`decision (engine)  = ${micro.decisionEngineNs.toFixed(0)} ns (target < 2000 ns)`);
    console.log(`decision (actor)   = ${micro.decisionActorNs.toFixed(0)} ns (target < 2000 ns)`);
    console.log(`heap per active user actor, 2 limits + 1 key = ${micro.heapBytesPerActor.toFixed(0)} bytes (target < 1024)`);
  }
}

main().then(
  () => {
    stopAll();
    process.exit(0);
  },
  (error: unknown) => {
    console.error(error);
    stopAll();
    process.exit(1);
  },
);
