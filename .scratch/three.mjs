import { HttpServer } from '../dist/src/http/index.js';
import { Metrics } from '../dist/src/node/metrics.js';
import pino from 'pino';
const mode = process.argv[2];
const metrics = mode === 'prom' ? new Metrics({ activeActors: () => 0, dirtyActors: () => 0, ownedShards: () => 0 }) : { observe() {} };
const s = new HttpServer({ routes: [], tokens: null, adminToken: undefined, serviceToken: undefined, trustProxy: false, metrics, log: pino({ level: 'silent' }) });
console.log(await s.listen('127.0.0.1', 9912));
