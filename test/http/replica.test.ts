/**
 * The Redis replica on one node and a real PostgreSQL: which copy an activation starts from
 * (copies planted in Redis by hand), and a Redis that goes away and comes back under load.
 */
import { readFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../support/http.js';
import { createTestDatabase } from '../support/postgres.js';
import { PrivateRedis, REDIS_URL, redisPrefix } from '../support/redis.js';
import { storedRow } from '../support/states.js';
import { createKey, createUser, startTestNode, type TestNode, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
let database: { url: string; drop(): Promise<void> };
let sql: postgres.Sql;

beforeAll(async () => {
  database = await createTestDatabase();
  sql = postgres(database.url, { max: 2, onnotice: () => {} });
});
afterAll(async () => {
  await sql?.end();
  await database?.drop();
});

interface StateRow {
  epoch: number;
  seq: number;
  state: { limits: { tokens: { used: number } } };
}

/** The key of `userId`'s copy in Redis: under the prefix and the database's incarnation. */
async function copyKey(prefix: string, userId: string): Promise<string> {
  const [row] = await sql<{ incarnation: string }[]>`select incarnation from database_incarnation`;
  return `${prefix}${row!.incarnation}:${userId}`;
}

async function stateRow(userId: string): Promise<StateRow> {
  const row = await storedRow(sql, userId);
  if (row === undefined) throw new Error(`no state row for ${userId}`);
  return { epoch: row.epoch, seq: row.seq, state: row.state };
}

const metric = async (node: TestNode, name: string): Promise<number> => {
  const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
  return Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
};

describe('activation with a replica', () => {
  const keys = redisPrefix();
  afterAll(() => keys.clear());
  let dataDir: string | undefined;
  /** A node on the same database and data directory (its key secret) each time. */
  const start = async () => {
    const node = await startTestNode({
      databaseUrl: database.url,
      dataDir,
      env: { REDIS_URL, TALLY_REDIS_PREFIX: keys.prefix, TALLY_REPLICA_INTERVAL_MS: '20' },
    });
    dataDir = node.dataDir;
    return node;
  };

  /** Writes a copy of `row`'s state with `used` tokens into Redis, as an owner under `epoch` would. */
  const plant = async (userId: string, row: StateRow, epoch: number, seq: number, used: number) => {
    const state = structuredClone(row.state);
    state.limits.tokens.used = used;
    return keys.redis.hset(await copyKey(keys.prefix, userId), 'e', String(epoch), 'q', String(seq), 's', packr.pack(state));
  };

  it('ignores a copy of an older epoch or past the fence, and takes a newer one and writes it to Postgres', async () => {
    let node = await start();
    const user = await createUser(node.api);
    const { key } = await createKey(node.api, user);
    for (let i = 0; i < 5; i++)
      expect((await node.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens: 10 } } })).status).toBe(200);
    // The owner pushed its copy: Redis holds the state the row will hold.
    await waitFor(async () => (await keys.redis.hget(await copyKey(keys.prefix, user.id), 'q')) !== null, 2000);
    await node.stop();
    const written = await stateRow(user.id);
    expect(written.state.limits.tokens.used).toBe(50);
    expect(written.seq).toBeGreaterThanOrEqual(5);

    // A copy of an older owner, with a far higher sequence: never used.
    await plant(user.id, written, written.epoch - 1, written.seq + 100, 999);
    node = await start();
    expect(await tokensUsed(node.api, key)).toBe(50);
    expect(await metric(node, 'tally_replica_activations_total{source="postgres"}')).toBe(1);
    await node.stop();

    // The same owner's copy, one change ahead of the row: used, and written behind.
    await plant(user.id, written, written.epoch, written.seq + 1, 77);
    node = await start();
    expect(await tokensUsed(node.api, key)).toBe(77);
    expect(await metric(node, 'tally_replica_activations_total{source="redis"}')).toBe(1);
    await waitFor(async () => (await stateRow(user.id)).state.limits.tokens.used === 77, 3000);
    const adopted = await stateRow(user.id);
    expect(adopted.epoch).toBeGreaterThan(written.epoch);
    expect(adopted.seq).toBe(written.seq + 1);
    await node.stop();

    // A copy from past the fence (say, Redis kept while Postgres was restored from a backup).
    const [fence] = await sql<{ epoch: string }[]>`select max(epoch) as epoch from shard_fence`;
    await plant(user.id, written, Number(fence!.epoch) + 5, written.seq + 50, 999);
    node = await start();
    try {
      expect(await tokensUsed(node.api, key)).toBe(77);
    } finally {
      await node.stop();
    }
  }, 60_000);
});

describe('a Redis that stops, starts again and stalls, under load', () => {
  let redis: PrivateRedis;
  let node: TestNode & { stop(): Promise<void> };

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    node = await startTestNode({ databaseUrl: database.url, env: { REDIS_URL: redis.url, TALLY_REPLICA_INTERVAL_MS: '20' } });
  });
  afterAll(async () => {
    await node?.stop();
    await redis?.stop();
  });

  it('answers every request, says the replica is down and back, pushes what changed meanwhile, and loses no usage in Postgres', async () => {
    const bulk = await node.api('PUT', '/v1/admin/tiers/bulk', {
      token: node.adminToken,
      body: {
        limits: [
          { name: 'requests', kind: 'rate', limit: 1_000_000, period_ms: 60_000, burst: 100_000 },
          { name: 'tokens', kind: 'budget', limit: 100_000_000, period: 'month', resource: 'tokens' },
        ],
      },
    });
    expect(bulk.status).toBe(200);
    const users = await Promise.all(Array.from({ length: 4 }, () => createUser(node.api, { adminToken: node.adminToken, tier: 'bulk' })));
    const keys = await Promise.all(users.map((user) => createKey(node.api, user)));
    const statuses = new Map<number, number>();
    let admitted = 0;
    let running = true;
    const hammer = async (api: Api, key: string) => {
      while (running) {
        const answer = await api('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens: 1 } } });
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status === 200) admitted++;
      }
    };
    const clients = keys.map(({ key }) => hammer(node.api, key));
    // A user who consumes only while Redis is away: the push after it is back carries the change.
    const quiet = await createUser(node.api, { adminToken: node.adminToken, tier: 'bulk' });
    const quietKey = await createKey(node.api, quiet);
    try {
      await waitFor(async () => (await metric(node, 'tally_replica_snapshots_total')) > 0, 3000);
      expect(await metric(node, 'tally_replica_up')).toBe(1);
      await redis.stop();
      await waitFor(async () => (await metric(node, 'tally_replica_up')) === 0, 3000);
      expect((await node.api('POST', '/v1/quota/consume', { token: quietKey.key, body: { cost: 1, amounts: { tokens: 7 } } })).status).toBe(200);
      await sleep(700);
      const readyWhileDown = await fetch(`${node.baseUrl}/health/ready`);
      expect(readyWhileDown.status).toBe(200);
      await redis.start();
      // It reconnects by itself and pushes again.
      const pushedBefore = await metric(node, 'tally_replica_snapshots_total');
      await waitFor(async () => (await metric(node, 'tally_replica_up')) === 1 && (await metric(node, 'tally_replica_snapshots_total')) > pushedBefore, 5000);
      const copies = new Redis(redis.url);
      try {
        const quietKey = await copyKey('tally:', quiet.id);
        await waitFor(async () => (await copies.hgetBuffer(quietKey, 's')) !== null, 3000);
        const copy = packr.unpack((await copies.hgetBuffer(quietKey, 's'))!) as StateRow['state'];
        expect(copy.limits.tokens.used).toBe(7);
      } finally {
        copies.disconnect();
      }
      // A stalled Redis: pushes wait, and a user activated meanwhile (at login) is read from
      // Postgres once the replica has not answered for 200 ms, long before Redis answers again.
      const late = { email: `late-${Date.now()}@example.com`, password: 'correct horse battery' };
      expect((await node.api('POST', '/v1/users', { token: node.adminToken, body: { ...late, tier: 'bulk' } })).status).toBe(201);
      const stalled = redis.stall(3);
      await sleep(100);
      const startedAt = performance.now();
      const login = await node.api('POST', '/v1/sessions', { body: late });
      expect(login.status).toBe(201);
      expect((await node.api('POST', '/v1/quota/consume', { token: login.body.token, body: { cost: 1 } })).status).toBe(200);
      expect(performance.now() - startedAt).toBeLessThan(2000);
      await stalled;
      expect(await metric(node, 'tally_replica_read_failures_total')).toBeGreaterThan(0);
    } finally {
      running = false;
      await Promise.all(clients);
    }
    expect([...statuses.keys()]).toEqual([200]);
    expect(await metric(node, 'tally_replica_push_failures_total')).toBeGreaterThan(0);
    // Every replica metric is in the operations guide, and the guide names no other.
    const exported = [...(await (await fetch(`${node.baseUrl}/metrics`)).text()).matchAll(/^# TYPE (tally_replica_\S+) /gm)].map((m) => m[1]!);
    const guide = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    const documented = [...guide.matchAll(/^\| `(tally_replica_[a-z_]+)`(?:, `(tally_replica_[a-z_]+)`)?/gm)].flatMap((m) => m.slice(1).filter(Boolean));
    expect(documented.sort()).toEqual(exported.sort());
    await node.stop();
    let used = 0;
    for (const user of users) used += (await stateRow(user.id)).state.limits.tokens.used;
    expect(used).toBe(admitted);
  }, 60_000);
});
