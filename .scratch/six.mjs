import { runLoad } from '../dist/bench/load.js';
const url = process.argv[2];
const admin = 'a'.repeat(32);
const call = async (m, p, b, tok) => { const r = await fetch(url + p, { method: m, headers: { 'content-type': 'application/json', ...(tok ? { authorization: 'Bearer ' + tok } : {}) }, body: JSON.stringify(b) }); return r.json(); };
await call('PUT', '/v1/admin/tiers/bench', { limits: [{ name: 'requests', kind: 'rate', limit: 1e9, period_ms: 60000, burst: 1e6 }, { name: 'tokens', kind: 'budget', limit: 1e12, period: 'month' }] }, admin);
const keys = [];
for (let i = 0; i < 5; i++) {
  const email = `b${i}-${Date.now()}@e.com`;
  await call('POST', '/v1/users', { email, password: 'password123', tier: 'bench' }, admin);
  const { token } = await call('POST', '/v1/sessions', { email, password: 'password123' }, admin);
  keys.push('Bearer ' + (await call('POST', '/v1/keys', {}, token)).key);
}
for (const [path, c] of [['/nothing', 50], ['/v1/quota/consume', 1], ['/v1/quota/consume', 50], ['/nothing', 50]]) {
  const r = await runLoad({ url: url + path, authorizations: keys, durationSeconds: 3, connections: c });
  console.log(path, c, Math.round(r.rps), r.p50Ms, r.p99Ms, r.non2xx);
}
