/**
 * A cluster for a test file: its own nats-server, a fresh Postgres database (migrated, so a
 * test may seed it before any node starts), shared secrets, and node processes started by
 * id. `stop()` kills every node's process group and the server, and drops the database.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { migrate } from '../../src/persistence/index.js';
import { initHashing } from '../../src/shards/index.js';
import { apiClient } from './http.js';
import { type NatsPasswords, type NatsServer, startNatsCluster, startNatsServer, startSecuredNatsServer, stopAllNatsServers } from './natsServer.js';
import { createTestDatabase } from './postgres.js';
import { killAllNodes, type NodeProcess, spawnNode } from './process.js';
import { makeTempDir } from './tmp.js';
import { waitFor } from './wait.js';

interface ClusterAnswer {
  nodes: { id: string; self: boolean; shards: number; status: string }[];
  leader: string | null;
  shards: { count: number; by_node: Record<string, number>; moving: number[]; unassigned: number };
}

export interface TestCluster {
  /** The first (or only) NATS server. */
  nats: NatsServer;
  /** Every NATS server: one, or three routed into a JetStream cluster. */
  natsServers: NatsServer[];
  /** With `secured`: the passwords of the shipped configuration's users (nodes connect as `tally-node`). */
  natsPasswords: NatsPasswords | null;
  /** The environment every node starts with. */
  env: Record<string, string>;
  sql: postgres.Sql;
  adminToken: string;
  leaseMs: number;
  nodes: Map<string, NodeProcess>;
  /** Starts node `id`, with `extra` settings on top of the cluster's. */
  start(id: string, extra?: Record<string, string>): Promise<NodeProcess>;
  /** Starts `ids` at once and waits until the map has settled on them and every node is ready. */
  startAll(ids: string[], settleMs?: number): Promise<void>;
  /** A tier in the database, for nodes started after it (each loads the tiers as it starts). */
  addTier(name: string, limits: object[], failOpen?: boolean): Promise<void>;
  /** GET /v1/admin/cluster on one node. */
  view(node: NodeProcess): Promise<ClusterAnswer>;
  /** Whether the map, as the first of `ids` sees it, is where placement wants it for `ids`, with nothing moving. */
  settledOn(ids: string[]): Promise<boolean>;
  /** Shards per owner in the fence table. */
  fenceOwners(): Promise<Record<string, number>>;
  /** Whether every running node answers ready. */
  allReady(): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * A strict tier's limits: `requests` admits exactly `limit` (its burst) and refills one
 * request per `periodMs / limit`; the default month refills none during a test.
 */
export const strictLimits = (limit: number, { periodMs = 30 * 86_400_000, tokens = 1_000_000 } = {}) => [
  { name: 'requests', kind: 'rate', limit, period_ms: periodMs, burst: limit },
  { name: 'tokens', kind: 'budget', limit: tokens, period: 'month', resource: 'tokens' },
];

export const sortedCounts = (counts: Record<string, number>) => Object.fromEntries(Object.entries(counts).sort());

export async function createTestCluster(
  options: {
    leaseMs?: number;
    heartbeatMs?: number;
    env?: Record<string, string>;
    natsServers?: 1 | 3;
    /** One nats-server run with the shipped configuration (deploy/nats-server.conf). */
    secured?: boolean;
  } = {},
): Promise<TestCluster> {
  await initHashing();
  const leaseMs = options.leaseMs ?? 3000;
  const secured = options.secured === true ? await startSecuredNatsServer() : null;
  const natsServers = secured !== null ? [secured] : options.natsServers === 3 ? await startNatsCluster() : [await startNatsServer()];
  const nats = natsServers[0]!;
  const database = await createTestDatabase();
  const sql = postgres(database.url, { max: 2, onnotice: () => {} });
  await migrate(sql);
  const adminToken = `admin-${randomBytes(12).toString('hex')}`;
  const env = {
    NATS_URL: natsServers.map((server) => server.url).join(','),
    DATABASE_URL: database.url,
    TALLY_ADMIN_TOKEN: adminToken,
    TALLY_JWT_SECRET: randomBytes(24).toString('hex'),
    TALLY_KEY_SECRET: randomBytes(24).toString('hex'),
    TALLY_LEASE_MS: String(leaseMs),
    TALLY_HEARTBEAT_MS: String(options.heartbeatMs ?? 200),
    ...(secured === null ? {} : { NATS_USER: 'tally-node', NATS_PASSWORD: secured.passwords.node }),
    ...options.env,
  };
  const nodes = new Map<string, NodeProcess>();
  const view = async (node: NodeProcess): Promise<ClusterAnswer> => {
    const answer = await apiClient(node.baseUrl)('GET', '/v1/admin/cluster', { token: adminToken });
    if (answer.status !== 200) throw new Error(`GET /v1/admin/cluster answered ${answer.status}`);
    return answer.body as ClusterAnswer;
  };
  const cluster: TestCluster = {
    nats,
    natsServers,
    natsPasswords: secured?.passwords ?? null,
    env,
    sql,
    adminToken,
    leaseMs,
    nodes,
    async start(id, extra = {}) {
      const node = await spawnNode({ ...env, TALLY_NODE_ID: id, TALLY_DATA_DIR: await makeTempDir(), ...extra });
      nodes.set(id, node);
      void node.exited.then(() => {
        if (nodes.get(id) === node) nodes.delete(id);
      });
      return node;
    },
    async startAll(ids, settleMs = 20_000) {
      await Promise.all(ids.map((id) => cluster.start(id)));
      await waitFor(() => cluster.settledOn(ids), settleMs);
      await waitFor(() => cluster.allReady(), 10_000);
    },
    async addTier(name, limits, failOpen = false) {
      await sql`insert into tiers (name, limits, fail_open) values (${name}, ${sql.json(limits as never)}, ${failOpen})`;
    },
    view,
    async settledOn(ids) {
      const answer = await view(nodes.get(ids[0]!)!);
      const wanted: Record<string, number> = {};
      for (const node of targetPlacement(ids).values()) wanted[node] = (wanted[node] ?? 0) + 1;
      return (
        answer.shards.moving.length === 0 &&
        answer.shards.unassigned === 0 &&
        JSON.stringify(sortedCounts(answer.shards.by_node)) === JSON.stringify(sortedCounts(wanted))
      );
    },
    async fenceOwners() {
      const rows = await sql<{ owner: string; shards: number }[]>`select owner, count(*)::int as shards from shard_fence group by owner`;
      return sortedCounts(Object.fromEntries(rows.map((row) => [row.owner, row.shards])));
    },
    async allReady() {
      const answers = await Promise.all([...nodes.values()].map((node) => fetch(`${node.baseUrl}/health/ready`).then((r) => r.status)));
      return answers.every((status) => status === 200);
    },
    async stop() {
      await killAllNodes();
      await stopAllNatsServers();
      await sql.end();
      await database.drop();
    },
  };
  return cluster;
}
