/**
 * The usage history on a 3-node cluster is exact: a strict user and budget users hammered
 * through every node while shards are moved (`tally cluster move`), a node is drained and
 * one is stopped with SIGTERM; afterwards each user's recorded usage of tokens for the month
 * equals what its budget's state says was spent. Then a kill -9 of an owner: usage and state
 * lost the same window (they are written together), and agree again. The NATS API's
 * `usage.get` answers what the admin route answers.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '../../src/shards/index.js';
import { createTestCluster, strictLimits, type TestCluster } from '../support/cluster.js';
import { runClusterCli, stopClusterClis } from '../support/clusterCli.js';
import { type Api, apiClient } from '../support/http.js';
import { createKey, createUser, type TestUser, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

const LIMIT = 120;
const BUDGET = 4000;
let cluster: TestCluster;
let nc: NatsConnection;

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000 });
  await cluster.addTier('strict', strictLimits(LIMIT));
  await cluster.addTier('budget', [{ name: 'tokens', kind: 'budget', limit: BUDGET, period: 'month', resource: 'tokens' }]);
  await cluster.startAll(['u1', 'u2', 'u3']);
  nc = await connect({ servers: cluster.nats.url });
}, 60_000);
afterAll(async () => {
  await nc?.close();
  await stopClusterClis();
  await cluster?.stop();
});

const apiOf = (id: string): Api => apiClient(cluster.nodes.get(id)!.baseUrl);
const monthStart = () => {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
};

interface Hammered {
  user: TestUser;
  key: string;
}

/** The month's recorded usage of `resource` for `user`, as the admin route reads it. */
async function recorded(via: string, userId: string, resource = 'tokens'): Promise<number> {
  const res = await apiOf(via)('GET', `/v1/admin/usage?start=${monthStart()}&bucket=1d&user_id=${userId}`, { token: cluster.adminToken });
  expect(res.status, res.text).toBe(200);
  let total = 0;
  for (const bucket of res.body.data) for (const result of bucket.results) if (result.resource === resource) total += result.amount;
  return total;
}

/** Every live node has written everything behind. */
async function allWritten(ids: string[]): Promise<boolean> {
  for (const id of ids) {
    const text = await (await fetch(`${cluster.nodes.get(id)!.baseUrl}/metrics`)).text();
    if (!/^tally_actors_dirty 0$/m.test(text)) return false;
  }
  return true;
}

describe('usage equals budget spent', () => {
  it('per user, exactly, through moves, a drain and a SIGTERM', async () => {
    const users: Hammered[] = [];
    for (const tier of ['strict', 'budget', 'budget', 'budget', 'strict']) {
      const user = await createUser(apiOf('u1'), { adminToken: cluster.adminToken, tier });
      users.push({ user, key: (await createKey(apiOf('u1'), user)).key });
    }
    let live = ['u1', 'u2', 'u3'];
    let stop = false;
    const statuses = new Map<number, number>();
    const load = (async () => {
      for (let round = 0; !stop; round++) {
        const answers = await Promise.all(
          users.flatMap(({ key }, index) =>
            live.map(async (id) => {
              const tokens = 1 + ((round + index) % 7);
              const answer = await apiOf(id)('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens } } });
              return answer.status;
            }),
          ),
        );
        for (const status of answers) statuses.set(status, (statuses.get(status) ?? 0) + 1);
        await sleep(5);
      }
    })();

    try {
      // Planned moves of the users' own shards, each to another node.
      for (const { user } of users.slice(0, 3)) {
        const owner = (await apiOf('u1')('GET', `/v1/admin/users/${user.id}`, { token: cluster.adminToken })).body.owner as string;
        const to = live.find((id) => id !== owner)!;
        const moved = await runClusterCli(cluster.nats.url, ['move', String(shardOf(user.id)), to, '--timeout', '30']);
        expect(moved.code, moved.out).toBe(0);
      }
      // A drain, then back, and the moves undone.
      const drained = await runClusterCli(cluster.nats.url, ['drain', 'u2', '--timeout', '30']);
      expect(drained.code, drained.out).toBe(0);
      expect((await runClusterCli(cluster.nats.url, ['undrain', 'u2'])).code).toBe(0);
      const rebalanced = await runClusterCli(cluster.nats.url, ['rebalance', '--timeout', '60']);
      expect(rebalanced.code, rebalanced.out).toBe(0);
      await waitFor(() => cluster.settledOn(['u1', 'u2', 'u3']), 30_000);
      // A SIGTERM: the node hands its shards off and leaves.
      const leaving = cluster.nodes.get('u3')!;
      live = ['u1', 'u2'];
      await sleep(200); // requests in flight to u3 finish first
      leaving.child.kill('SIGTERM');
      expect(await leaving.exited).toBe(0);
      await waitFor(() => cluster.settledOn(['u1', 'u2']), 30_000);
      await sleep(500);
    } finally {
      stop = true;
      await load;
    }

    expect([...statuses.keys()].filter((status) => status !== 200 && status !== 429)).toEqual([]);
    await waitFor(() => allWritten(live), 10_000);
    for (const { user, key } of users) {
      const spent = await tokensUsed(apiOf('u1'), key);
      expect(spent).toBeGreaterThan(0);
      expect(await recorded('u2', user.id), `user ${user.id} (${spent} spent)`).toBe(spent);
    }
  }, 180_000);

  it('after a kill -9 of the owner, usage and state lost the same window and agree again', async () => {
    const user = await createUser(apiOf('u1'), { adminToken: cluster.adminToken, tier: 'budget' });
    const key = (await createKey(apiOf('u1'), user)).key;
    const ownerOf = async () => (await apiOf('u1')('GET', `/v1/admin/users/${user.id}`, { token: cluster.adminToken })).body.owner as string;
    const owner = await ownerOf();
    const other = owner === 'u1' ? 'u2' : 'u1';
    for (let i = 0; i < 30; i++) expect((await apiOf(other)('POST', '/v1/quota/consume', { token: key, body: { amounts: { tokens: 3 } } })).status).toBe(200);
    // Killed at once: what the last flushes wrote is all either side keeps.
    const victim = cluster.nodes.get(owner)!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    await waitFor(async () => (await apiOf(other)('GET', '/v1/quota', { token: key })).status === 200, cluster.leaseMs + 5000);
    const spent = await tokensUsed(apiOf(other), key);
    expect(spent).toBeLessThanOrEqual(90);
    expect(await recorded(other, user.id)).toBe(spent);
    for (let i = 0; i < 10; i++) expect((await apiOf(other)('POST', '/v1/quota/consume', { token: key, body: { amounts: { tokens: 2 } } })).status).toBe(200);
    await waitFor(() => allWritten([other]), 10_000);
    expect(await tokensUsed(apiOf(other), key)).toBe(spent + 20);
    expect(await recorded(other, user.id)).toBe(spent + 20);

    // The NATS API answers the usage query as the admin route does.
    const query = { start: monthStart(), bucket: '1d', group_by: ['user'], user_id: user.id };
    const overNats = JSON.parse(new TextDecoder().decode((await nc.request('tally.v1.usage.get', JSON.stringify(query), { timeout: 5000 })).data));
    const overHttp = await apiOf(other)('GET', `/v1/admin/usage?start=${monthStart()}&bucket=1d&group_by=user&user_id=${user.id}`, {
      token: cluster.adminToken,
    });
    expect(overNats).toEqual(overHttp.body);
    const refused = await nc.request('tally.v1.usage.get', JSON.stringify({ start: 'yesterday' }), { timeout: 5000 });
    expect(refused.headers?.get('Nats-Service-Error-Code')).toBe('400');
  }, 90_000);
});
