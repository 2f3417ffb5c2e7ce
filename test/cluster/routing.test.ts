/**
 * Requests reach the owner wherever they arrive: three node processes, users created and
 * consuming through every node, a strict limit hammered through all three at once admits
 * exactly its limit, and a key deleted on one node is refused on every node at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, strictLimits, type TestCluster } from '../support/cluster.js';
import { type Api, apiClient } from '../support/http.js';
import { createKey, createUser, tokensUsed } from '../support/tally.js';
import { waitFor } from '../support/wait.js';

const LIMIT = 60;
let cluster: TestCluster;
const ids = ['r1', 'r2', 'r3'];

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000 });
  // A strict tier, in the database before any node starts (every node loads it).
  await cluster.addTier('strict', strictLimits(LIMIT, { periodMs: 3_600_000 }));
  await cluster.startAll(ids);
}, 60_000);
afterAll(() => cluster?.stop());

const apis = () => ids.map((id) => apiClient(cluster.nodes.get(id)!.baseUrl));

describe('routing to the owner', () => {
  it('serves a user through every node, with one usage whichever node a request reaches', async () => {
    const [a, b, c] = apis();
    const users = await Promise.all(Array.from({ length: 6 }, (_, i) => createUser([a, b, c][i % 3]!, { adminToken: cluster.adminToken, tier: 'pro' })));
    for (const user of users) {
      const key = await createKey(b!, user);
      for (const api of [a, b, c]) {
        const answer = await api!('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1, amounts: { tokens: 5 } } });
        expect(answer.status).toBe(200);
      }
      for (const api of [a, b, c]) expect(await tokensUsed(api!, key.key)).toBe(15);
      expect((await c!('GET', '/v1/user/profile', { token: user.token })).status).toBe(200);
    }
  }, 60_000);

  it('admits exactly the limit of a strict tier hammered through all three nodes at once', async () => {
    const all = apis();
    const user = await createUser(all[0]!, { adminToken: cluster.adminToken, tier: 'strict' });
    const key = await createKey(all[1]!, user);
    const answers = await Promise.all(
      Array.from({ length: LIMIT * 3 }, (_, i) => all[i % 3]!('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1 } })),
    );
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(LIMIT);
    expect(statuses.filter((status) => status === 429)).toHaveLength(LIMIT * 2);
    // Two thirds went to the owner from the other nodes, in batches.
    let forwarded = 0;
    let batches = 0;
    for (const id of ids) {
      const text = await (await fetch(`${cluster.nodes.get(id)!.baseUrl}/metrics`)).text();
      const sample = (name: string) => Number(text.match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1] ?? 0);
      forwarded += sample('tally_cluster_forwarded_total');
      batches += sample('tally_cluster_forward_batches_total');
      expect(sample('tally_cluster_forward_failures_total')).toBe(0);
    }
    expect(forwarded).toBeGreaterThanOrEqual(LIMIT * 2);
    expect(batches).toBeGreaterThan(0);
    expect(batches).toBeLessThan(forwarded);
  }, 60_000);

  it('refuses a key deleted on one node on every node, from the next request', async () => {
    const [a, b, c] = apis();
    const user = await createUser(a!, { adminToken: cluster.adminToken, tier: 'pro' });
    const key = await createKey(a!, user);
    for (const api of [a, b, c]) expect((await api!('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1 } })).status).toBe(200);
    expect((await b!('DELETE', `/v1/keys/${key.id}`, { token: user.token })).status).toBe(204);
    for (const api of [a, b, c]) expect((await api!('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1 } })).status).toBe(401);
    // And a session revoked on one node is refused everywhere.
    expect((await c!('POST', '/v1/sessions/logout-all', { token: user.token })).status).toBe(200);
    for (const api of [a, b, c]) expect((await api!('GET', '/v1/user/profile', { token: user.token })).status).toBe(401);
  }, 60_000);

  it('puts a tier edit and a block made on one node in force on every node', async () => {
    const [a, b, c] = apis();
    const token = cluster.adminToken;
    const tier = `edited${Date.now()}`;
    const put = (api: Api | undefined, limit: number) =>
      api!('PUT', `/v1/admin/tiers/${tier}`, { token, body: { limits: [{ name: 'requests', kind: 'rate', limit, period_ms: 3_600_000, burst: limit }] } });
    const all = [a, b, c];
    const everyNodeHas = (limit: number) => async () => {
      const answers = await Promise.all(all.map((api) => api!('GET', '/v1/admin/tiers', { token })));
      return answers.every((answer) =>
        answer.body.tiers.some((t: { name: string; limits: { limit: number }[] }) => t.name === tier && t.limits[0]!.limit === limit),
      );
    };
    // Within a second: told over NATS (the periodic reload alone runs every 5 s).
    expect((await put(a, 100)).status).toBe(200);
    await waitFor(everyNodeHas(100), 1000);
    const user = await createUser(c!, { adminToken: token, tier });
    const key = await createKey(c!, user);
    expect((await put(b, 2)).status).toBe(200);
    await waitFor(everyNodeHas(2), 1000);
    const statuses = [];
    for (const api of all) statuses.push((await api!('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1 } })).status);
    expect(statuses).toEqual([200, 200, 429]);

    expect((await b!('PATCH', `/v1/admin/users/${user.id}`, { token, body: { blocked: true } })).status).toBe(200);
    for (const api of all) expect((await api!('GET', '/v1/quota', { token: key.key })).status).toBe(403);
    const unblocked = await a!('PATCH', `/v1/admin/users/${user.id}`, { token, body: { blocked: false } });
    expect(unblocked.body.blocked).toBe(false);
    for (const api of all) expect((await api!('GET', '/v1/quota', { token: key.key })).status).toBe(200);
    // Every node says where the user lives, and agrees.
    const where = await Promise.all(all.map((api) => api!('GET', `/v1/admin/users/${user.id}`, { token })));
    expect(new Set(where.map((answer) => `${answer.body.shard}/${answer.body.owner}`)).size).toBe(1);
    expect(ids).toContain(where[0]!.body.owner);
  }, 30_000);

  it('counts failed logins for one account across every node: the limiter key has one owner', async () => {
    const all = apis();
    const user = await createUser(all[0]!, { adminToken: cluster.adminToken, tier: 'pro' });
    // Ten failures allowed per account, made through the three nodes in turn; were each
    // node counting alone, each would allow ten.
    for (let i = 0; i < 10; i++) {
      const answer = await all[i % 3]!('POST', '/v1/sessions', { body: { email: user.email, password: 'wrong-password' } });
      expect(answer.status).toBe(401);
    }
    for (const api of all) expect((await api!('POST', '/v1/sessions', { body: { email: user.email, password: 'wrong-password' } })).status).toBe(429);
  }, 30_000);
});
