/**
 * A rolling restart: each of three nodes in turn gets SIGTERM, is started again under its
 * id and waited for until ready, while clients hammer a strict limit through the nodes that
 * are up (a node leaves the clients' list at SIGTERM, as it leaves a load balancer's when
 * its readiness turns false). Admitted equals the limit exactly, every request gets a
 * decision (200 or 429, never an error), and no usage is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, strictLimits, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createKey, createUser, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

const LIMIT = 1000;
const ids = ['w1', 'w2', 'w3'];
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000 });
  await cluster.addTier('strict', strictLimits(LIMIT));
  await cluster.startAll(ids);
}, 60_000);
afterAll(() => cluster?.stop());

const apiOf = (id: string) => apiClient(cluster.nodes.get(id)!.baseUrl);

describe('a rolling restart of every node', () => {
  it('admits exactly a strict limit hammered through the nodes that are up, with no error and no usage lost', async () => {
    const users = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const user = await createUser(apiOf('w1'), { adminToken: cluster.adminToken, tier: 'strict' });
        return { user, key: (await createKey(apiOf('w1'), user)).key, sent: 0, allowed: 0 };
      }),
    );
    const up = new Set(ids);
    const statuses = new Map<number, number>();
    let restarted = false;
    const hammering = (async () => {
      while (!restarted || users.some((u) => u.sent < LIMIT + 100)) {
        const via = [...up].map(apiOf);
        await Promise.all(
          users.flatMap((u) =>
            via.map(async (api) => {
              const { status } = await api('POST', '/v1/quota/consume', { token: u.key, body: { cost: 1, amounts: { tokens: 1 } } });
              u.sent++;
              if (status === 200) u.allowed++;
              statuses.set(status, (statuses.get(status) ?? 0) + 1);
            }),
          ),
        );
        await sleep(5);
      }
    })();

    const restarts: number[] = [];
    for (const id of ids) {
      const node = cluster.nodes.get(id)!;
      up.delete(id);
      const stoppedAt = performance.now();
      node.child.kill('SIGTERM');
      expect(await node.exited).toBe(0);
      await cluster.start(id);
      await waitFor(async () => (await fetch(`${cluster.nodes.get(id)!.baseUrl}/health/ready`)).status === 200, 20_000);
      up.add(id);
      await waitFor(() => cluster.settledOn(ids), 20_000);
      restarts.push(Math.round(performance.now() - stoppedAt));
    }
    restarted = true;
    await hammering;

    expect([...statuses.keys()].sort()).toEqual([200, 429]);
    for (const u of users) {
      expect(u.allowed).toBe(LIMIT);
      expect(await tokensUsed(apiOf('w2'), u.key)).toBe(LIMIT);
    }
    if (process.env.TALLY_TEST_FIGURES) console.info('restart ms (stop, start, ready, settled):', restarts);
  }, 120_000);
});
