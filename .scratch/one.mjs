import { startTally } from '../dist/bench/tally.js';
const t = await startTally(5);
console.log(t.url, t.keys[0]);
for (const c of [1]) {
  const s = performance.now();
  for (let i = 0; i < 200; i++) await fetch(t.url + '/v1/quota/consume', { method: 'POST', headers: { authorization: 'Bearer ' + t.keys[0], 'content-type': 'application/json' }, body: '{"cost":1}' });
  console.log('fetch sequential avg ms', ((performance.now() - s) / 200).toFixed(3));
}
await t.child.stop();
process.exit(0);
