import { HttpServer } from '../dist/src/http/index.js';
import { buildRoutes } from '../dist/src/http/index.js';
import { runLoad } from '../dist/bench/load.js';
import pino from 'pino';
const mode = process.argv[2];
const now = Date.now();
const decision = { allowed: true, retryAfterMs: 0, exceedsCapacity: false, limits: [
  { name: 'requests', kind: 'rate', limit: 1e9, remaining: 999999, reset_at: now + 1000, window_ms: 60000 },
  { name: 'tokens', kind: 'budget', limit: 1e12, remaining: 1e12 - 5, reset_at: now + 1e9, window_ms: 2.6e9 }] };
const router = { user: async () => decision, limiter: async () => null };
const routes = buildRoutes({ router, accounts: null, tiers: null, clock: Date.now, health: null, cluster: null, metrics: null }, '0').filter((r) => r.path === '/v1/quota/consume');
const s = new HttpServer({ routes, tokens: null, adminToken: 'x'.repeat(32), serviceToken: undefined, trustProxy: false, metrics: { observe() {} }, log: pino({ level: 'silent' }) });
const port = await s.listen('127.0.0.1', 0);
const key = 'Bearer tk_ulebfjb32pqbqurb2usdq_kvjmvve3ij7ce_3hj9GRgvBCKM8U5KCp9lhvMgdbVjmCctZJphUgr7tr4';
const { Session } = await import('node:inspector/promises'); const { writeFileSync } = await import('node:fs'); const ss = new Session(); ss.connect(); await ss.post('Profiler.enable'); await ss.post('Profiler.start');
const e0 = performance.eventLoopUtilization();
const r = await runLoad({ url: `http://127.0.0.1:${port}/v1/quota/consume`, authorizations: [key], durationSeconds: 3, connections: 50 });
console.log(mode, Math.round(r.rps), r.p50Ms, 'elu', performance.eventLoopUtilization(e0).utilization.toFixed(2));
const { profile } = await ss.post('Profiler.stop'); writeFileSync('/tmp/prof3/p.cpuprofile', JSON.stringify(profile));
process.exit(0);
