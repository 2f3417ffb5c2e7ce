/**
 * The NATS server restarts under a running cluster: ownership does not change, the nodes'
 * watches resume (a later map change is seen by all), and requests succeed afterwards
 * through every node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createKey, createUser, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

let cluster: TestCluster;
const ids = ['n1', 'n2', 'n3'];

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000 });
  await cluster.startAll(ids);
}, 60_000);
afterAll(() => cluster?.stop());

describe('a NATS server restart', () => {
  it('changes no owner, and the cluster serves and follows the map afterwards', async () => {
    const apis = ids.map((id) => apiClient(cluster.nodes.get(id)!.baseUrl));
    const user = await createUser(apis[0]!, { adminToken: cluster.adminToken, tier: 'pro' });
    const key = await createKey(apis[0]!, user);
    const before = (await cluster.view(cluster.nodes.get('n1')!)).shards.by_node;
    const fenceBefore = await cluster.fenceOwners();

    await cluster.nats.restart();
    await sleep(1500); // the clients reconnect and renew

    await waitFor(() => cluster.allReady(), 10_000);
    for (const id of ids) expect((await cluster.view(cluster.nodes.get(id)!)).shards.by_node).toEqual(before);
    expect(await cluster.fenceOwners()).toEqual(fenceBefore); // nobody claimed anything anew
    for (const api of apis) expect((await api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1, amounts: { tokens: 3 } } })).status).toBe(200);
    expect(await tokensUsed(apis[2]!, key.key)).toBe(9);

    // The watches resumed: a node leaving now is seen by the other two, who take its shards.
    const leaving = cluster.nodes.get('n3')!;
    leaving.child.kill('SIGTERM');
    expect(await leaving.exited).toBe(0);
    await waitFor(() => cluster.settledOn(['n1', 'n2']), 10_000);
    await waitFor(() => cluster.settledOn(['n2', 'n1']), 10_000);
  }, 60_000);
});
