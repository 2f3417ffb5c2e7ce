/**
 * The trust model on a real nats-server run with the configuration the project ships
 * (deploy/nats-server.conf) and two nodes connected as its node user:
 * - a platform service in account APPS calls the NATS API and nothing else: it cannot listen
 *   on node subjects, bucket subjects, the API's own subjects or others' inboxes;
 * - the operator user reads the cluster and asks nodes for changes, and cannot listen to the
 *   API or the nodes, nor write a bucket;
 * - a client inside TALLY with the node password but without TALLY_KEY_SECRET cannot act as
 *   a node: its forwarded batch is never answered or decided, and the entries it forges in
 *   the shard map, the leader entry and the members bucket change nothing.
 */
import { Kvm } from '@nats-io/kv';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '../../src/shards/index.js';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createUser, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

const ids = ['a', 'b'];
let cluster: TestCluster;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000, secured: true });
  await cluster.startAll(ids);
}, 60_000);
afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
  await cluster?.stop();
});

const api = (i = 0) => apiClient(cluster.nodes.get(ids[i % ids.length]!)!.baseUrl);

async function client(user: string, password: string, inboxPrefix?: string): Promise<NatsConnection> {
  const nc = await connect({ servers: cluster.nats.url, user, pass: password, ...(inboxPrefix === undefined ? {} : { inboxPrefix }) });
  connections.push(nc);
  return nc;
}

/** Whether the server refuses `nc` a subscription to `subject` (a permissions violation closes it). */
async function subscriptionRefused(nc: NatsConnection, subject: string, queue?: string): Promise<boolean> {
  const sub = nc.subscribe(subject, { ...(queue === undefined ? {} : { queue }), callback: () => {} });
  const closed = await Promise.race([sub.closed.then((error) => error ?? 'closed'), sleep(500).then(() => null)]);
  sub.unsubscribe();
  return closed instanceof Error && /Permissions Violation for Subscription/.test(closed.message);
}

/** Publishes and reports whether the server said the publish was refused. */
async function publishRefused(nc: NatsConnection, subject: string, data: Uint8Array | string = 'x'): Promise<boolean> {
  let refused = false;
  const watching = (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'error' && /Permissions Violation for Publish/.test(String(status.error?.message)) && String(status.error?.message).includes(subject))
        refused = true;
    }
  })();
  nc.publish(subject, data);
  await nc.flush();
  await sleep(200);
  void watching;
  return refused;
}

const metric = async (node: string, series: string): Promise<number> => {
  const text = await (await fetch(`${cluster.nodes.get(node)!.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((one) => one.startsWith(series));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
};

describe('the shipped NATS configuration', () => {
  it('lets nobody in without a password, and the nodes in with theirs', async () => {
    await expect(connect({ servers: cluster.nats.url, reconnect: false })).rejects.toThrow(/Authorization/i);
    await expect(connect({ servers: cluster.nats.url, user: 'tally-node', pass: 'wrong', reconnect: false })).rejects.toThrow(/Authorization/i);
    expect(await cluster.allReady()).toBe(true);
  });

  it('lets a service in APPS call the NATS API and nothing else of Tally', async () => {
    const user = await createUser(api(), { adminToken: cluster.adminToken });
    const app = await client('app', cluster.natsPasswords!.app, '_INBOX_app');
    const reply = await app.request('tally.v1.quota.consume', JSON.stringify({ user_id: user.id, amounts: { tokens: 5 } }), {
      timeout: 5000,
      headers: headers(),
    });
    expect(JSON.parse(reply.string())).toMatchObject({ allowed: true });

    for (const subject of [
      'tally.node.a',
      'tally.node.*',
      'tally.>',
      '$KV.tally_members.>',
      '$KV.tally_shards.>',
      '$KV.>',
      'tally.v1.>',
      'tally.v1.sessions.verify',
      'tally.v1.node.a.quota.consume',
      '_INBOX.>',
      '_INBOX_tally_operator.>',
      '>',
    ])
      expect(await subscriptionRefused(app, subject), subject).toBe(true);
    // Nor in the service's own queue group, where it would receive other callers' requests.
    expect(await subscriptionRefused(app, 'tally.v1.sessions.verify', 'tally')).toBe(true);
    expect(await publishRefused(app, 'tally.node.a')).toBe(true);
    expect(await publishRefused(app, '$KV.tally_shards.shard.0')).toBe(true);
    // It hears that the shard map changed, but cannot say so itself (to other services).
    expect(await subscriptionRefused(app, 'tally.events.map')).toBe(false);
    expect(await publishRefused(app, 'tally.events.map')).toBe(true);
    // Its own replies still come: the connection is fine after every refusal.
    const again = await app.request('tally.v1.quota.get', JSON.stringify({ user_id: user.id }), { timeout: 5000, headers: headers() });
    expect(JSON.parse(again.string())).toMatchObject({ tier: 'free' });
  });

  it('lets the operator user read the buckets, and refuses it the API, the nodes and every write', async () => {
    const operator = await client('tally-operator', cluster.natsPasswords!.operator, '_INBOX_tally_operator');
    const members = await new Kvm(operator).open('tally_members');
    expect((await members.get('a'))?.string()).toContain('"id":"a"');
    for (const subject of ['tally.v1.>', 'tally.node.a', '_INBOX.>', 'tally.cluster.operator'])
      expect(await subscriptionRefused(operator, subject), subject).toBe(true);
    expect(await publishRefused(operator, 'tally.node.a')).toBe(true);
    expect(await publishRefused(operator, '$KV.tally_shards.shard.0', '{"owner":"evil","status":"owned"}')).toBe(true);
    expect(await publishRefused(operator, 'tally.tiers.edited')).toBe(true);
  });
});

describe('a client inside TALLY without the key secret', () => {
  it('cannot have a node decide a forged batch: it is neither answered nor carried out', async () => {
    const user = await createUser(api(), { adminToken: cluster.adminToken });
    const intruder = await client('tally-node', cluster.natsPasswords!.node);
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const forged = packr.pack({
      v: 1,
      items: [{ kind: 'user', request: { userId: user.id, credential: { kind: 'trusted' }, op: 'admin.update', args: { blocked: true } } }],
    });
    const refusedBefore = (await metric('a', 'tally_cluster_unsealed_total{kind="batch"}')) + (await metric('b', 'tally_cluster_unsealed_total{kind="batch"}'));
    for (const node of ids) await expect(intruder.request(`tally.node.${node}`, forged, { timeout: 1000 })).rejects.toThrow();
    const refusedAfter = (await metric('a', 'tally_cluster_unsealed_total{kind="batch"}')) + (await metric('b', 'tally_cluster_unsealed_total{kind="batch"}'));
    expect(refusedAfter - refusedBefore).toBe(2);
    const admin = await api(1)('GET', `/v1/admin/users/${user.id}`, { token: cluster.adminToken });
    expect(admin.body.blocked).toBe(false);
    expect((await api(0)('POST', '/v1/quota/consume', { token: user.token, body: { amounts: { tokens: 1 } } })).status).toBe(200);
  });

  it('cannot move a shard, take the lead or add a member by writing the buckets', async () => {
    const intruder = await client('tally-node', cluster.natsPasswords!.node);
    const kvm = new Kvm(intruder);
    const user = await createUser(api(), { adminToken: cluster.adminToken });
    const shard = shardOf(user.id);
    const epochOf = async () => (await cluster.sql<{ epoch: string }[]>`select epoch from shard_fence where shard = ${shard}`)[0]?.epoch;
    const epochBefore = await epochOf();
    const leaderBefore = (await cluster.view(cluster.nodes.get('a')!)).leader;

    await (await kvm.open('tally_shards')).put(`shard.${shard}`, JSON.stringify({ owner: 'evil', status: 'owned' }));
    await (await kvm.open('tally_coordinator')).put('leader', 'not json at all');
    await (await kvm.open('tally_members')).put(
      'evil',
      JSON.stringify({ id: 'evil', incarnation: 'x', address: 'http://evil', version: '1', status: 'active', beat: 1 }),
    );

    // The forged leader entry is taken over at once by a node; the map entry changes nothing
    // until a node writes over it; the fake member never shows.
    await waitFor(async () => (await cluster.view(cluster.nodes.get('a')!)).leader !== null, 5000);
    await sleep(1500);
    for (const node of ids) {
      const view = await cluster.view(cluster.nodes.get(node)!);
      expect(view.nodes.map((member) => member.id).sort()).toEqual(ids);
      expect(Object.keys(view.shards.by_node).sort()).toEqual(ids);
      expect(view.shards.unassigned).toBe(0);
    }
    expect(ids).toContain(leaderBefore);
    expect(epochBefore).toBeDefined();
    expect(await epochOf()).toBe(epochBefore);
    for (let i = 0; i < ids.length; i++)
      expect((await api(i)('POST', '/v1/quota/consume', { token: user.token, body: { amounts: { tokens: 1 } } })).status).toBe(200);
    const unsealed = async (kind: string) =>
      (await metric('a', `tally_cluster_unsealed_total{kind="${kind}"}`)) + (await metric('b', `tally_cluster_unsealed_total{kind="${kind}"}`));
    expect(await unsealed('shards')).toBeGreaterThanOrEqual(2);
    expect(await unsealed('members')).toBeGreaterThanOrEqual(2);
    expect(await unsealed('leader')).toBeGreaterThanOrEqual(1);
  });

  it('cannot have a recorded batch taken twice, nor make a node drop a shard or a member by deleting or putting back entries', async () => {
    const intruder = await client('tally-node', cluster.natsPasswords!.node);
    const kvm = new Kvm(intruder);
    const user = await createUser(api(), { adminToken: cluster.adminToken });
    const owner = await ownerOf(user.id);
    const other = ids.find((id) => id !== owner)!;
    const ownerApi = api(ids.indexOf(owner));
    const claimsBefore = await claims();

    // A batch recorded on its way to the owner and published again, to the same reply subject.
    const recorded: { subject: string; data: Uint8Array; reply: string }[] = [];
    const tap = intruder.subscribe(`tally.node.${owner}`, {
      callback: (_error, msg) => {
        recorded.push({ subject: msg.subject, data: msg.data, reply: msg.reply! });
      },
    });
    await intruder.flush();
    expect((await api(ids.indexOf(other))('POST', '/v1/quota/consume', { token: user.token, body: { amounts: { tokens: 1 } } })).status).toBe(200);
    await waitFor(async () => recorded.length > 0, 5000);
    tap.unsubscribe();
    const refusedBefore = await metric(owner, 'tally_cluster_unsealed_total{kind="batch"}');
    for (const batch of recorded) intruder.publish(batch.subject, batch.data, { reply: batch.reply });
    await intruder.flush();
    await waitFor(async () => (await metric(owner, 'tally_cluster_unsealed_total{kind="batch"}')) - refusedBefore === recorded.length, 5000);
    expect(await tokensUsedBy(user.token)).toBe(1);

    // The user's map entry deleted, then put back as it was (an old sealed entry), then
    // overwritten; the owner's member entry deleted.
    const shards = await kvm.open('tally_shards');
    const key = `shard.${shardOf(user.id)}`;
    const sealed = (await shards.get(key))!.value;
    await shards.delete(key);
    await shards.put(key, sealed);
    await shards.delete(key);
    await shards.put(key, 'garbage');
    await (await kvm.open('tally_members')).delete(owner);
    await sleep(2000);
    for (const node of ids) {
      const view = await cluster.view(cluster.nodes.get(node)!);
      expect(view.nodes.map((member) => member.id).sort()).toEqual(ids);
      expect(view.shards.unassigned).toBe(0);
    }
    expect(await claims()).toBe(claimsBefore);
    expect((await ownerApi('POST', '/v1/quota/consume', { token: user.token, body: { amounts: { tokens: 1 } } })).status).toBe(200);
    expect(await tokensUsedBy(user.token)).toBe(2);
  });
});

/** Every claim any node has made: the sum of the fence's epochs (each claim bumps one). */
async function claims(): Promise<string> {
  const [row] = await cluster.sql<{ total: string }[]>`select sum(epoch)::text as total from shard_fence`;
  return row!.total;
}

/** The node that owns `userId`'s shard, from the fence. */
async function ownerOf(userId: string): Promise<string> {
  const [row] = await cluster.sql<{ owner: string }[]>`select owner from shard_fence where shard = ${shardOf(userId)}`;
  return row!.owner;
}

const tokensUsedBy = (token: string) => tokensUsed(api(0), token);
