import { HttpServer } from '../dist/src/http/index.js';
import { runLoad } from '../dist/bench/load.js';
import { Type } from '@sinclair/typebox';
import pino from 'pino';
const mode = process.argv[2];
const body = Type.Object({ cost: Type.Optional(Type.Integer()) });
const routes = [{ method: 'post', path: '/v1/quota/consume', summary: '', tag: '', auth: mode === 'auth' ? 'user' : 'none', body, bodyOptional: true, responses: {},
  handle: async () => ({ status: 200, body: { allowed: true, limits: [] } }) }];
const s = new HttpServer({ routes, tokens: null, adminToken: undefined, serviceToken: undefined, trustProxy: false, metrics: { observe() {} }, log: pino({ level: 'silent' }) });
const port = await s.listen('127.0.0.1', 0);
const key = 'Bearer tk_ulebfjb32pqbqurb2usdq_kvjmvve3ij7ce_3hj9GRgvBCKM8U5KCp9lhvMgdbVjmCctZJphUgr7tr4';
const t0 = process.cpuUsage(); const e0 = performance.eventLoopUtilization();
const r = await runLoad({ url: `http://127.0.0.1:${port}/v1/quota/consume`, authorizations: [key], durationSeconds: 3, connections: 50 });
const c = process.cpuUsage(t0); console.log(mode, Math.round(r.rps), r.p50Ms, 'cpu', ((c.user + c.system) / 1e6 / r.seconds).toFixed(2), 'elu', performance.eventLoopUtilization(e0).utilization.toFixed(2));
process.exit(0);
