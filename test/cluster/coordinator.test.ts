/**
 * The coordinator and the shard map against a real nats-server: one leader among several
 * nodes, every shard assigned within a few rounds and spread within 20 % of the average, a
 * joining node's share moved a bounded number at a time, a dead node's shards reassigned
 * after its lease, and the lead taken over from a leader gone silent.
 */
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterMac, Coordinator, Membership, ShardMap, targetPlacement } from '../../src/node/cluster/index.js';
import { initHashing, SHARD_COUNT } from '../../src/shards/index.js';
import { type NatsServer, startNatsServer, stopAllNatsServers } from '../support/natsServer.js';
import { waitFor } from '../support/wait.js';

const LEASE_MS = 600;
const HEARTBEAT_MS = 100;
const MAX_MOVES = 32;
const log = pino({ level: 'silent' });
const mac = new ClusterMac(new Uint8Array(32).fill(7), log);

let server: NatsServer;
const connections: NatsConnection[] = [];

interface TestNode {
  id: string;
  membership: Membership;
  map: ShardMap;
  coordinator: Coordinator;
  stop(): void;
  handOffs: number;
}
const nodes: TestNode[] = [];

beforeAll(async () => {
  await initHashing();
  server = await startNatsServer();
});
afterAll(async () => {
  for (const node of nodes) node.stop();
  await Promise.all(connections.map((nc) => nc.close()));
  await stopAllNatsServers();
});

/**
 * A node as far as the map goes: it heartbeats, runs coordinator rounds, and hands off at
 * once every shard the map says is moving away from it (a real node flushes first).
 */
async function startTestNode(id: string): Promise<TestNode> {
  const nc = await connect({ servers: server.url });
  connections.push(nc);
  const incarnation = randomBytes(4).toString('hex');
  const membership = await Membership.open(nc, {
    nodeId: id,
    incarnation,
    address: '',
    version: 'test',
    leaseMs: LEASE_MS,
    heartbeatMs: HEARTBEAT_MS,
    log,
    mac,
  });
  await membership.join();
  const map = await ShardMap.open(nc, log, mac);
  const coordinator = await Coordinator.open(nc, membership, map, null, { nodeId: id, incarnation, leaseMs: LEASE_MS, maxMoves: MAX_MOVES, log, mac });
  const node: TestNode = { id, membership, map, coordinator, handOffs: 0, stop: () => {} };
  map.onChange = (shard, now) => {
    if (now?.status === 'moving' && now.owner === id) {
      void map.handOff(shard, now.to!, map.get(shard)!.revision).then((done) => {
        if (done) node.handOffs++;
      });
    }
  };
  let running = true;
  const loop = (async () => {
    while (running) {
      await coordinator.tick().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS));
    }
  })();
  node.stop = () => {
    running = false;
    membership.close();
    map.close();
    void loop;
  };
  nodes.push(node);
  return node;
}

const byNode = (map: ShardMap) => map.summary().byNode;
/** The map is where placement wants it for these nodes, with nothing moving. */
const settled = (map: ShardMap, ids: string[]) => {
  const target = targetPlacement(ids);
  return map.summary().moving === 0 && [...target].every(([shard, node]) => map.owner(shard) === node);
};

describe('the coordinator', () => {
  it('settles three nodes on every shard, within 20 % of the average, with one leader', async () => {
    const [a, b, c] = await Promise.all(['c1', 'c2', 'c3'].map(startTestNode));
    await waitFor(async () => settled(a!.map, ['c1', 'c2', 'c3']), 10_000);
    const counts = byNode(a!.map);
    for (const count of Object.values(counts)) expect(Math.abs(count - SHARD_COUNT / 3)).toBeLessThanOrEqual(0.2 * (SHARD_COUNT / 3));
    await waitFor(async () => [a, b, c].filter((node) => node!.coordinator.leading).length === 1, 2000);
    // Every node's copy of the map is the same.
    await waitFor(async () => JSON.stringify(byNode(b!.map)) === JSON.stringify(counts) && JSON.stringify(byNode(c!.map)) === JSON.stringify(counts), 2000);
  });

  it('gives a fourth node its share by planned moves, a bounded number at a time', async () => {
    let mostMoving = 0;
    const first = nodes[0]!;
    const watch = setInterval(() => {
      mostMoving = Math.max(mostMoving, first.map.summary().moving);
    }, 5);
    try {
      const d = await startTestNode('c4');
      await waitFor(async () => settled(first.map, ['c1', 'c2', 'c3', 'c4']), 15_000);
      const counts = byNode(first.map);
      expect(Math.abs(counts.c4! - SHARD_COUNT / 4)).toBeLessThanOrEqual(0.2 * (SHARD_COUNT / 4));
      // Every shard it got was handed off by its old owner (counted when the write's answer arrives).
      await waitFor(async () => nodes.slice(0, 3).reduce((sum, node) => sum + node.handOffs, 0) === counts.c4, 2000);
      expect(d.handOffs).toBe(0);
    } finally {
      clearInterval(watch);
    }
    expect(mostMoving).toBeGreaterThan(0);
    expect(mostMoving).toBeLessThanOrEqual(MAX_MOVES);
  });

  it('reassigns a dead node’s shards once its lease has run out, and a new leader takes over a silent one', async () => {
    const leader = nodes.find((node) => node.coordinator.leading)!;
    const survivors = nodes.filter((node) => node !== leader);
    const killedAt = performance.now();
    leader.stop(); // as kill -9: nothing is handed off, the entries stay
    const watcher = survivors[0]!;
    await waitFor(
      async () =>
        settled(
          watcher.map,
          survivors.map((node) => node.id),
        ),
      10_000,
    );
    const recoveredMs = performance.now() - killedAt;
    expect(recoveredMs).toBeGreaterThanOrEqual(LEASE_MS);
    expect(recoveredMs).toBeLessThan(LEASE_MS * 2 + 2000);
    await waitFor(async () => survivors.filter((node) => node.coordinator.leading).length === 1, 2000);
    expect(Object.keys(byNode(watcher.map))).not.toContain(leader.id);
  });
});
