/**
 * A node shutting down claims nothing. Once SIGTERM has come, a shard the map still gives the
 * node (here: every one of its shards, since TALLY_DRAIN_TIMEOUT_MS=0 skips the hand-offs) is
 * not claimed again when the node stops serving it. Such a claim would bump the shard's epoch
 * in the fence and refuse the node's own final flush, and would let the node decide forwarded
 * requests whose state it then drops. Forwarded requests are answered `moved` and go to the
 * next owner instead: nothing admitted is lost, and nothing refused is charged.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { LimiterService, shardOf } from '../../src/shards/index.js';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { sleep, waitFor } from '../support/wait.js';

const ids = ['d1', 'd2', 'd3'];
const SERVICE_TOKEN = `service-${randomBytes(12).toString('hex')}`;
/** Enough keys that the final flush takes a while: a round (every 50 ms) falls inside it. */
const KEYS = 3000;
const LIMIT = 1000;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000, heartbeatMs: 50, env: { TALLY_DRAIN_TIMEOUT_MS: '0', TALLY_SERVICE_TOKEN: SERVICE_TOKEN } });
  await cluster.startAll(ids);
}, 60_000);
afterAll(() => cluster?.stop());

/** Limiter keys whose shard the map gives `owner`. */
function keysOwnedBy(owner: string, count: number): string[] {
  const placement = targetPlacement(ids);
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) {
    const key = `shutdown-${i}`;
    if (placement.get(shardOf(LimiterService.entityKey('service', key))) === owner) keys.push(key);
  }
  return keys;
}

describe('a node shutting down', () => {
  it('claims nothing after SIGTERM, answers forwarded requests moved, and loses no admitted check', async () => {
    const leaving = cluster.nodes.get('d1')!;
    const keys = keysOwnedBy('d1', KEYS);
    const apis = ['d2', 'd3'].map((id) => apiClient(cluster.nodes.get(id)!.baseUrl));
    const admitted = new Map(keys.map((key) => [key, 0]));
    const failures: number[] = [];
    const check = (i: number, key: string) =>
      apis[i % 2]!('POST', '/v1/limiter/check', { token: SERVICE_TOKEN, body: { key, limit: LIMIT, window_ms: 600_000 } });

    // Every key is checked once through the other two nodes (forwarded to d1), so d1 holds
    // thousands of dirty actors; then checks go on, key after key, through the shutdown.
    let stop = false;
    let sent = 0;
    const load = Promise.all(
      Array.from({ length: 32 }, async (_, worker) => {
        for (let i = worker; !stop || i < keys.length; i += 32) {
          const key = keys[i % keys.length]!;
          const answer = await check(i, key);
          sent++;
          if (answer.status !== 200) failures.push(answer.status);
          else if (answer.body.allowed === true) admitted.set(key, admitted.get(key)! + 1);
        }
      }),
    );
    await waitFor(async () => sent >= keys.length, 60_000);
    const logsBefore = leaving.logs.length;
    leaving.child.kill('SIGTERM');
    expect(await leaving.exited).toBe(0);
    await sleep(500);
    stop = true;
    await load;

    const after = leaving.logs.slice(logsBefore).map((line) => JSON.parse(line) as { msg: string; fenced?: number; written?: number });
    expect(after.filter((entry) => entry.msg === 'claimed shards')).toEqual([]);
    const flush = after.find((entry) => entry.msg === 'final flush');
    expect(flush).toMatchObject({ fenced: 0 });
    // Without a drain, d1's shards have no owner for a moment after it leaves: those checks
    // are refused as unavailable (nothing charged), never failed otherwise.
    expect(failures.filter((status) => status !== 503)).toEqual([]);

    // The next owners serve exactly what was admitted: one more check leaves LIMIT - admitted - 1.
    for (let i = 0; i < keys.length; i += 15) {
      const key = keys[i]!;
      const answer = await check(i, key);
      expect({ key, remaining: answer.body.remaining }).toEqual({ key, remaining: LIMIT - admitted.get(key)! - 1 });
    }
  }, 120_000);
});
