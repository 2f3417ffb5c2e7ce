/**
 * Real node processes on a nats-server of their own and a fresh Postgres database: three
 * nodes settle on all 1024 shards, each within 20 % of the average, and every node gives the
 * same answer; the fence agrees with the map; one node leaving with SIGTERM hands its shards
 * to the others at once (no lease wait); a fourth node joins and gets its share; and a node
 * killed with SIGKILL has its shards claimed and served by the others within a lease and 2 s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, sortedCounts, type TestCluster } from '../support/cluster.js';
import { waitFor } from '../support/wait.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000 });
}, 30_000);
afterAll(() => cluster?.stop());

describe('a cluster of node processes', () => {
  it('settles three nodes on all 1024 shards, each within 20 % of the average, the same seen from every node', async () => {
    await Promise.all(['t1', 't2', 't3'].map((id) => cluster.start(id)));
    await waitFor(() => cluster.settledOn(['t1', 't2', 't3']), 20_000);
    const views = await Promise.all(['t1', 't2', 't3'].map((id) => cluster.view(cluster.nodes.get(id)!)));
    const average = 1024 / 3;
    for (const count of Object.values(views[0]!.shards.by_node)) expect(Math.abs(count - average)).toBeLessThanOrEqual(0.2 * average);
    expect(views[1]!.shards.by_node).toEqual(views[0]!.shards.by_node);
    expect(views[2]!.shards.by_node).toEqual(views[0]!.shards.by_node);
    expect(views.map((view) => view.nodes.find((node) => node.self)!.id)).toEqual(['t1', 't2', 't3']);
    expect(new Set(views.map((view) => view.leader)).size).toBe(1);
    // Each node has claimed its shards in the fence, and is ready.
    await waitFor(async () => JSON.stringify(await cluster.fenceOwners()) === JSON.stringify(sortedCounts(views[0]!.shards.by_node)), 10_000);
    await waitFor(() => cluster.allReady(), 10_000);
  }, 60_000);

  it('hands a node’s shards to the others at once when it leaves with SIGTERM', async () => {
    const leaving = cluster.nodes.get('t3')!;
    const stoppedAt = performance.now();
    leaving.child.kill('SIGTERM');
    expect(await leaving.exited).toBe(0);
    await waitFor(() => cluster.settledOn(['t1', 't2']), 10_000);
    // Well inside a lease: the leaving node deleted its entry instead of going silent.
    expect(performance.now() - stoppedAt).toBeLessThan(cluster.leaseMs);
    await waitFor(async () => (await cluster.fenceOwners()).t3 === undefined, 5000);
  }, 30_000);

  it('gives a node that joins its share', async () => {
    await cluster.start('t4');
    await waitFor(() => cluster.settledOn(['t1', 't2', 't4']), 20_000);
    await waitFor(() => cluster.allReady(), 10_000);
  }, 40_000);

  it('serves a killed node’s shards again within a lease and 2 s, from claims in the fence', async () => {
    const killed = cluster.nodes.get('t4')!;
    const killedAt = performance.now();
    killed.child.kill('SIGKILL');
    await killed.exited;
    await waitFor(() => cluster.settledOn(['t1', 't2']), cluster.leaseMs + 5000);
    await waitFor(async () => (await cluster.fenceOwners()).t4 === undefined && (await cluster.allReady()), cluster.leaseMs + 5000);
    const recoveredMs = performance.now() - killedAt;
    // Not before a lease (less the heartbeat: the last renewal may have been sent that much
    // before the kill), and within a lease and 2 s.
    expect(recoveredMs).toBeGreaterThanOrEqual(cluster.leaseMs - 200);
    expect(recoveredMs).toBeLessThan(cluster.leaseMs + 2000);
  }, 30_000);
});
