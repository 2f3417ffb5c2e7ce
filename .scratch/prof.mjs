import { TallyNode, loadConfig } from '../dist/src/node/index.js';
import { runLoad } from '../dist/bench/load.js';
import { Session } from 'node:inspector/promises';
import { mkdtempSync, writeFileSync } from 'node:fs';
const admin = 'a'.repeat(32);
const cfg = loadConfig({ TALLY_ADMIN_TOKEN: admin, TALLY_HTTP_PORT: '9917', TALLY_HTTP_HOST: '127.0.0.1', TALLY_DATA_DIR: mkdtempSync('/tmp/t4-'), TALLY_LOG_LEVEL: 'warn', DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/tally_bench' });
const n = new TallyNode(cfg); await n.start(); if (process.env.NOMETRICS) n.metrics.observe = () => {}; globalThis.__n = n;
const url = 'http://127.0.0.1:9917';
const call = async (m, p, b, tok) => { const r = await fetch(url + p, { method: m, headers: { 'content-type': 'application/json', ...(tok ? { authorization: 'Bearer ' + tok } : {}) }, body: JSON.stringify(b) }); return r.json(); };
await call('PUT', '/v1/admin/tiers/bench', { limits: [{ name: 'requests', kind: 'rate', limit: 1e9, period_ms: 60000, burst: 1e6 }, { name: 'tokens', kind: 'budget', limit: 1e12, period: 'month' }] }, admin);
const keys = [];
for (let i = 0; i < 20; i++) {
  const email = `p${i}-${Date.now()}@e.com`;
  await call('POST', '/v1/users', { email, password: 'password123', tier: 'bench' }, admin);
  const { token } = await call('POST', '/v1/sessions', { email, password: 'password123' }, admin);
  keys.push('Bearer ' + (await call('POST', '/v1/keys', {}, token)).key);
}
const prof = process.argv[2] === 'prof'; if (process.env.NOTIMERS) for (const t of n.timers) clearInterval(t); const s = new Session(); if (prof) { s.connect(); await s.post('Profiler.enable'); await s.post('Profiler.start'); }
const t0 = process.cpuUsage(); const e0 = performance.eventLoopUtilization();
const r = await runLoad({ url: url + '/v1/quota/consume', authorizations: keys, durationSeconds: Number(process.env.D ?? 4), connections: 50 });
const cpu = process.cpuUsage(t0);
if (prof) { const { profile } = await s.post('Profiler.stop'); writeFileSync('/tmp/prof2/p.cpuprofile', JSON.stringify(profile)); }
console.log(Math.round(r.rps), r.p50Ms, 'cpu s', (cpu.user + cpu.system) / 1e6, 'of', r.seconds, 'elu', performance.eventLoopUtilization(e0).utilization.toFixed(2));
await n.stop(); process.exit(0);
