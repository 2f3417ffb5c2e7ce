import { runLoad } from '../dist/bench/load.js';
const url = process.argv[2];
const seed = process.argv[3] === 'seed';
if (seed) {
  const r = await fetch(url + '/v1/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: `x${Date.now()}@e.com`, password: 'password123' }) });
  console.log('seed', r.status);
}
for (const [path, c] of [['/nothing', 50], ['/nothing', 50]]) {
  const r = await runLoad({ url: url + path, authorizations: ['Bearer abc'], durationSeconds: 3, connections: c });
  console.log(path, c, Math.round(r.rps), r.p50Ms, r.p99Ms);
}
