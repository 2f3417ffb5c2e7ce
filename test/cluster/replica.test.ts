/**
 * What a crash costs, with and without the Redis replica, on three node processes: a user
 * consumes at a steady rate through one node while another owns it; the owner is killed with
 * kill -9 right after a consume returns; once its shards are served again, the usage the new
 * owner starts from is compared with what was admitted. Write-behind alone may lose up to a
 * flush interval (1 s here, the default); with the replica, at most about one replica
 * interval (100 ms, the default), also when the Redis prefix was kept from another database.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { shardOf } from '../../src/shards/index.js';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { REDIS_URL, redisPrefix } from '../support/redis.js';
import { createKey, createUser, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

const FLUSH_MS = 1000;
const REPLICA_MS = 100;
/** Consumes a second, sent one after another through a node that forwards them to the owner. */
const RATE = 100;
/** Consumes for at least this long, then until this long after one of the owner's flushes. */
const SECONDS = 2;
const KILL_AFTER_FLUSH_MS = 850;
const ids = ['r1', 'r2', 'r3'];

interface Loss {
  admitted: number;
  used: number;
  /** Consumes admitted per second, as measured. */
  rate: number;
}

/** Starts a cluster, runs the steady consumer, kills the owner, and measures what was lost. */
async function crashLoss(env: Record<string, string>): Promise<Loss> {
  let cluster: TestCluster | undefined;
  try {
    cluster = await createTestCluster({ leaseMs: 3000, env: { TALLY_FLUSH_INTERVAL_MS: String(FLUSH_MS), ...env } });
    await cluster.addTier('steady', [
      { name: 'requests', kind: 'rate', limit: 1_000_000, period_ms: 60_000, burst: 100_000 },
      { name: 'tokens', kind: 'budget', limit: 1_000_000, period: 'month', resource: 'tokens' },
    ]);
    await cluster.startAll(ids);
    const entry = apiClient(cluster.nodes.get('r1')!.baseUrl);
    const placement = targetPlacement(ids);
    let key: string | undefined;
    while (key === undefined) {
      const user = await createUser(entry, { adminToken: cluster.adminToken, tier: 'steady' });
      if (placement.get(shardOf(user.id)) === 'r3') key = (await createKey(entry, user)).key;
    }

    const owner = cluster.nodes.get('r3')!;
    // The owner's flushes, as its metrics show them: the kill is timed for late in an
    // interval, where write-behind alone has the most unwritten usage.
    let flushedAt = 0;
    let watching = true;
    const watcher = (async () => {
      let flushes = -1;
      while (watching) {
        const text = await (await fetch(`${owner.baseUrl}/metrics`)).text();
        const count = Number(/^tally_flush_total\{result="ok"\} (\d+)/m.exec(text)?.[1] ?? 0);
        if (flushes >= 0 && count !== flushes) flushedAt = performance.now();
        flushes = count;
        await sleep(10);
      }
    })();
    let admitted = 0;
    const started = performance.now();
    try {
      for (let i = 0; ; i++) {
        const now = performance.now();
        if (now - started > SECONDS * 1000 && flushedAt > 0 && now - flushedAt >= KILL_AFTER_FLUSH_MS) break;
        const answer = await entry('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens: 1 } } });
        expect(answer.status).toBe(200);
        admitted++;
        const next = started + ((i + 1) * 1000) / RATE;
        if (next > performance.now()) await sleep(next - performance.now());
      }
    } finally {
      watching = false;
      await watcher;
    }
    const rate = admitted / ((performance.now() - started) / 1000);
    owner.child.kill('SIGKILL');
    await owner.exited;
    await waitFor(async () => (await entry('GET', '/v1/quota', { token: key })).status === 200, cluster.leaseMs + 5000);
    return { admitted, used: await tokensUsed(entry, key), rate };
  } finally {
    await cluster?.stop();
  }
}

describe('a kill -9 of an owner under steady load', () => {
  const keys = redisPrefix();
  const losses: Record<string, Loss> = {};
  afterAll(async () => {
    await keys.clear();
    // The figures the issue asks for, in the test's output.
    for (const [name, loss] of Object.entries(losses)) {
      const lost = loss.admitted - loss.used;
      console.log(
        `${name}: ${loss.admitted} admitted, ${loss.used} kept, ${lost} lost = ${((lost / loss.rate) * 1000).toFixed(0)} ms at ${loss.rate.toFixed(0)}/s`,
      );
    }
  });

  it('with the Redis replica, loses at most about one replica interval of usage', async () => {
    const loss = await crashLoss({ REDIS_URL, TALLY_REDIS_PREFIX: keys.prefix, TALLY_REPLICA_INTERVAL_MS: String(REPLICA_MS) });
    losses['with Redis'] = loss;
    expect(loss.used).toBeLessThanOrEqual(loss.admitted);
    // One interval of consumption, and the push in flight when the owner died.
    expect(loss.admitted - loss.used).toBeLessThanOrEqual(Math.ceil((loss.rate * (REPLICA_MS + 30)) / 1000) + 1);
  }, 60_000);

  it('with a Redis prefix kept from another database (its fence far ahead), still loses at most about one replica interval', async () => {
    // A re-created or restored database, while Redis kept the prefix: the former database's
    // fence stands at epochs this one will not reach for a long time, in the layout before
    // incarnations and under another incarnation.
    const stale = redisPrefix();
    try {
      const ahead = Object.fromEntries(Array.from({ length: 1024 }, (_, shard) => [String(shard), '1000000']));
      await stale.redis.hset(`${stale.prefix}#fence`, ahead);
      await stale.redis.set(`${stale.prefix}#incarnation`, 'former');
      await stale.redis.hset(`${stale.prefix}former:#fence`, ahead);
      const loss = await crashLoss({ REDIS_URL, TALLY_REDIS_PREFIX: stale.prefix, TALLY_REPLICA_INTERVAL_MS: String(REPLICA_MS) });
      losses['with Redis, stale prefix'] = loss;
      expect(loss.used).toBeLessThanOrEqual(loss.admitted);
      expect(loss.admitted - loss.used).toBeLessThanOrEqual(Math.ceil((loss.rate * (REPLICA_MS + 30)) / 1000) + 1);
    } finally {
      await stale.clear();
    }
  }, 60_000);

  it('without it, loses what came since the last flush: most of a flush interval, this late in one', async () => {
    const loss = await crashLoss({});
    losses['without Redis'] = loss;
    expect(loss.used).toBeLessThanOrEqual(loss.admitted);
    expect(loss.admitted - loss.used).toBeLessThanOrEqual(Math.ceil((loss.rate * (FLUSH_MS + 100)) / 1000) + 1);
    expect(loss.admitted - loss.used).toBeGreaterThanOrEqual(Math.floor((loss.rate * (KILL_AFTER_FLUSH_MS - 300)) / 1000));
  }, 60_000);
});
