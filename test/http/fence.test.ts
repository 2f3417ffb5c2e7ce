/**
 * Two single nodes started on one database by mistake: the second claims every shard, and
 * the epoch fence makes the first give up each shard as soon as it learns of it — when it
 * loads an actor (the load reads the fence) or when a write is refused — instead of going
 * on to decide from stale state. A strict limit hammered through both nodes never admits
 * more than the limit, and the node that lost its shards says so.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric } from '../support/metrics.js';
import { createTestDatabase } from '../support/postgres.js';
import { createKey, createUser, type StartedNode, startTestNode, tokensUsed } from '../support/tally.js';
import { waitFor } from '../support/wait.js';

const secrets = () => ({ TALLY_JWT_SECRET: randomBytes(32).toString('hex'), TALLY_KEY_SECRET: randomBytes(32).toString('hex') });

async function twoNodes(): Promise<{ first: StartedNode; second: StartedNode; stop(): Promise<void> }> {
  const database = await createTestDatabase();
  const env = secrets();
  const first = await startTestNode({ databaseUrl: database.url, env: { ...env, TALLY_NODE_ID: 'first' } });
  const second = await startTestNode({ databaseUrl: database.url, env: { ...env, TALLY_NODE_ID: 'second' } });
  return {
    first,
    second,
    async stop() {
      await first.stop();
      await second.stop();
      await database.drop();
    },
  };
}

describe('a node whose shards were claimed by another', () => {
  let nodes: Awaited<ReturnType<typeof twoNodes>>;
  beforeAll(async () => {
    nodes = await twoNodes();
  });
  afterAll(() => nodes.stop());

  it('never admits past a strict limit hammered through both nodes, and says it lost the shard', async () => {
    const { first, second } = nodes;
    // Made through the second node, the one that holds the shards now.
    const user = await createUser(second.api, { tier: 'pro', adminToken: second.adminToken });
    const key = (await createKey(second.api, user)).key;
    const override = { overrides: [{ name: 'requests', kind: 'window', limit: 100, window_ms: 600_000 }] };
    expect((await second.api('PATCH', `/v1/admin/users/${user.id}`, { token: second.adminToken, body: override })).status).toBe(200);

    const through = [first, second];
    const answers: { node: number; status: number; retryAfter: string | null }[] = [];
    const requests = Array.from({ length: 300 }, (_, i) => i);
    for (let i = 0; i < requests.length; i += 30) {
      const wave = await Promise.all(
        requests.slice(i, i + 30).map(async (n) => {
          const res = await through[n % 2]!.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1 } });
          return { node: n % 2, status: res.status, retryAfter: res.headers.get('retry-after') };
        }),
      );
      answers.push(...wave);
    }
    const admitted = answers.filter((answer) => answer.status === 200);
    expect(admitted.length).toBe(100); // the limit, exactly: all of it through the owner
    expect(admitted.every((answer) => answer.node === 1)).toBe(true);
    const fromFirst = answers.filter((answer) => answer.node === 0);
    expect(fromFirst.every((answer) => answer.status === 503 && answer.retryAfter !== null)).toBe(true);

    // Having lost one shard, the first node looks at every fence: the second claimed them all.
    await waitFor(async () => (await metric(first.api, 'tally_shards_lost')) === 1024);
    const ready = await first.api('GET', '/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.shards.ok).toBe(false);
    expect(ready.body.checks.shards.detail).toMatch(/^0\/1024 served; 1024 lost to another node/);
    const cluster = await first.api('GET', '/v1/admin/cluster', { token: first.adminToken });
    expect(cluster.body.shards.lost).toHaveLength(1024);
    expect(cluster.body.nodes[0].shards).toBe(0);
    expect((await second.api('GET', '/health/ready')).status).toBe(200);
  });
});

describe('a node whose write is refused by the fence', () => {
  const env = secrets();
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let first: StartedNode;
  let second: StartedNode | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    first = await startTestNode({ databaseUrl: database.url, env: { ...env, TALLY_NODE_ID: 'first' } });
  });
  afterAll(async () => {
    await first.stop();
    await second?.stop();
    await database.drop();
  });

  it('gives the shard up: strict users get 503, fail_open users are allowed and counted as degraded', async () => {
    const strict = await createUser(first.api, { tier: 'pro', adminToken: first.adminToken });
    const strictKey = (await createKey(first.api, strict)).key;
    const open = await createUser(first.api); // free: fail_open
    const openKey = (await createKey(first.api, open)).key;
    for (const key of [strictKey, openKey])
      expect((await first.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens: 1 } } })).status).toBe(200);
    await waitFor(async () => (await metric(first.api, 'tally_actors_dirty')) === 0); // written under the first node's epochs

    // A second node on the same database claims every shard.
    second = await startTestNode({ databaseUrl: database.url, env: { ...env, TALLY_NODE_ID: 'second' } });
    const owner = second;
    // The first node does not know yet and decides from memory; the flush that follows is refused.
    for (const key of [strictKey, openKey])
      expect((await first.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens: 1 } } })).status).toBe(200);
    await waitFor(async () => (await metric(first.api, 'tally_flush_fenced_rows_total')) >= 1);
    await waitFor(async () => (await metric(first.api, 'tally_shards_lost')) === 1024);

    const refused = await first.api('POST', '/v1/quota/consume', { token: strictKey, body: { cost: 1 } });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.body.type).toBe('urn:tally:problem:owner-unavailable');
    // Fail-open admits only a credential the node saw verified lately: the session, which made
    // the key on the slow path a moment ago. A key with a made-up secret (its MAC checks) is not.
    const degraded = await first.api('POST', '/v1/quota/consume', { token: open.token, body: { cost: 1 } });
    expect(degraded.status).toBe(200);
    expect(degraded.headers.get('tally-degraded')).toBe('1');
    expect(degraded.body).toEqual({ allowed: true, limits: [] });
    const madeUp = `${openKey.slice(0, openKey.indexOf('.') + 1)}${'A'.repeat(32)}`;
    expect((await first.api('POST', '/v1/quota/consume', { token: madeUp, body: { cost: 1 } })).status).toBe(503);
    expect(await metric(first.api, 'tally_quota_degraded_total', { operation: 'consume' })).toBe(1);
    expect((await first.api('GET', '/health/ready')).status).toBe(503);

    // The second node serves both from the database: what the first wrote before the claim.
    expect(await tokensUsed(owner.api, strictKey)).toBe(1);
    expect(await tokensUsed(owner.api, openKey)).toBe(1);
  });
});
