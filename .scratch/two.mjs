import { startTally } from '../dist/bench/tally.js';
import { runLoad } from '../dist/bench/load.js';
const t = await startTally(5);
for (const c of [1, 4, 50]) {
  const r = await runLoad({ url: t.url + '/v1/quota/consume', authorizations: t.keys.map((k) => 'Bearer ' + k), durationSeconds: 3, connections: c });
  console.log(c, Math.round(r.rps), r.p50Ms, r.p99Ms);
}
const rq = await runLoad({ url: t.url + '/v1/nothing', authorizations: ['Bearer x'], durationSeconds: 3, connections: 50 });
console.log('404 route', Math.round(rq.rps), rq.p50Ms);
await t.child.stop();
process.exit(0);
