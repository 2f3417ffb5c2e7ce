/**
 * Three Tally nodes on a three-server NATS cluster (JetStream, buckets replicated three
 * ways): one NATS server is killed. Ownership does not change, the nodes' clients move to the
 * other servers, their watches resume (a later leave is seen and followed by all), and
 * requests succeed through every node afterwards.
 */
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createKey, createUser, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

let cluster: TestCluster;
const ids = ['c1', 'c2', 'c3'];

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 4000, natsServers: 3 });
  await cluster.startAll(ids, 30_000);
}, 90_000);
afterAll(() => cluster?.stop());

interface StreamInfo {
  config: { num_replicas: number };
  cluster: { leader: string };
}

async function streamInfo(stream: string): Promise<StreamInfo> {
  const nc = await connect({ servers: cluster.natsServers.map((server) => server.url) });
  try {
    return (await nc.request(`$JS.API.STREAM.INFO.${stream}`, '', { timeout: 5000 })).json<StreamInfo>();
  } finally {
    await nc.close();
  }
}

describe('one server of a three-server NATS cluster killed', () => {
  it('changes no owner, and the cluster serves and follows the map afterwards', async () => {
    const apis = ids.map((id) => apiClient(cluster.nodes.get(id)!.baseUrl));
    const user = await createUser(apis[0]!, { adminToken: cluster.adminToken, tier: 'pro' });
    const key = await createKey(apis[0]!, user);
    const before = (await cluster.view(cluster.nodes.get('c1')!)).shards.by_node;
    const fenceBefore = await cluster.fenceOwners();
    // Every bucket is replicated on the three servers. The shard map's stream leader goes:
    // the hardest server to lose (a new leader must be elected before the map is written).
    const streams = await Promise.all(['KV_tally_members', 'KV_tally_shards', 'KV_tally_coordinator'].map(streamInfo));
    expect(streams.map((info) => info.config.num_replicas)).toEqual([3, 3, 3]);
    const leader = streams[1]!.cluster.leader;
    const victim = cluster.natsServers[Number(leader.replace('tally-test-', ''))]!;
    await victim.stop();
    await sleep(2000);

    await waitFor(() => cluster.allReady(), 15_000);
    for (const id of ids) expect((await cluster.view(cluster.nodes.get(id)!)).shards.by_node).toEqual(before);
    expect(await cluster.fenceOwners()).toEqual(fenceBefore);
    for (const api of apis) expect((await api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1, amounts: { tokens: 3 } } })).status).toBe(200);
    expect(await tokensUsed(apis[1]!, key.key)).toBe(9);

    // The watches resumed on the remaining servers: a node leaving is followed by the other two.
    const leaving = cluster.nodes.get('c3')!;
    leaving.child.kill('SIGTERM');
    expect(await leaving.exited).toBe(0);
    await waitFor(() => cluster.settledOn(['c1', 'c2']), 15_000);
    await waitFor(() => cluster.settledOn(['c2', 'c1']), 15_000);
    expect(await tokensUsed(apis[0]!, key.key)).toBe(9);
  }, 90_000);
});
