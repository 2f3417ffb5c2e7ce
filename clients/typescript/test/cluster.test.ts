/**
 * @tally/client against three node processes on a nats-server run with the shipped
 * configuration: every call over both transports (NATS as the platform's service user `app`,
 * and HTTP with the service token, through each node), calls routed to their owners (nothing
 * forwarded between nodes), auto-batching of 1000 concurrent calls on a strict limit, a shard
 * moved mid-stream, an owner killed, and an owner frozen past the call's timeout.
 */

import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initHashing, shardOf } from '../../../src/shards/index.js';
import { createTestCluster, strictLimits, type TestCluster } from '../../../test/support/cluster.js';
import { runClusterCli, stopClusterClis } from '../../../test/support/clusterCli.js';
import { apiClient } from '../../../test/support/http.js';
import { metric } from '../../../test/support/metrics.js';
import { createKey, createUser, tokensUsed } from '../../../test/support/tally.js';
import { waitFor } from '../../../test/support/wait.js';
import { NotFoundError, TallyClient, TimeoutError, UnauthenticatedError } from '../src/index.js';

const LIMIT = 60;
const ids = ['n1', 'n2', 'n3'];
let cluster: TestCluster;
let nc: NatsConnection;
let tally: TallyClient;
const serviceToken = `service-${randomBytes(12).toString('hex')}`;

beforeAll(async () => {
  await initHashing();
  cluster = await createTestCluster({ leaseMs: 2000, secured: true, env: { TALLY_SERVICE_TOKEN: serviceToken } });
  await cluster.addTier('strict', strictLimits(LIMIT, { periodMs: 3_600_000, tokens: 1_000_000 }));
  await cluster.addTier('roomy', strictLimits(10_000_000, { periodMs: 60_000, tokens: 10_000_000 }));
  await cluster.startAll(ids);
  nc = await connect({ servers: cluster.nats.url, user: 'app', pass: cluster.natsPasswords!.app, inboxPrefix: '_INBOX_app' });
  tally = await TallyClient.nats(nc);
}, 90_000);
afterAll(async () => {
  await tally?.close();
  await nc?.close();
  await stopClusterClis();
  await cluster?.stop();
});

const api = (i = 0) => apiClient(cluster.nodes.get(ids[i % ids.length]!)!.baseUrl);
const newUser = (tier = 'strict', i = 0) => createUser(api(i), { adminToken: cluster.adminToken, tier });
/** Items forwarded between nodes so far, summed over the nodes running. */
const forwarded = async () => {
  let sum = 0;
  for (const node of cluster.nodes.values()) sum += await metric(apiClient(node.baseUrl), 'tally_cluster_forwarded_total');
  return sum;
};
/** The owner of the user's shard, as the first running node's map says. */
const ownerOf = async (userId: string): Promise<string | null> => {
  const node = [...cluster.nodes.values()][0]!;
  const answer = await apiClient(node.baseUrl)('GET', '/v1/admin/cluster', { token: cluster.adminToken });
  return (answer.body as { shards: { owners: (string | null)[] } }).shards.owners[shardOf(userId)] ?? null;
};

/** The client under test: over NATS, or over HTTP through node `i`. */
const clientFor = (transport: 'nats' | 'http', i: number) =>
  transport === 'nats' ? tally : TallyClient.http({ url: cluster.nodes.get(ids[i]!)!.baseUrl, token: serviceToken });

describe.each(['nats', 'http'] as const)('the client over %s', (transport) => {
  it.each([0, 1, 2])(
    'answers every call, typed, through node %i: consume, get, reserve with settle and release, verifySession, limiter.check, usage',
    async (i) => {
      const tally = clientFor(transport, i);
      const user = await newUser('pro', i);
      expect(tally.routed).toBe(transport === 'nats');

      const consumed = await tally.consume(user.id, { amounts: { tokens: 100 } });
      expect(consumed).toMatchObject({ allowed: true, degraded: false });
      expect(consumed.limits.length).toBeGreaterThan(0);
      expect(consumed.limits[0]!.resetAt).toBeInstanceOf(Date);

      const quota = await tally.get(user.id);
      expect(quota.tier).toBe('pro');
      expect(quota.limits.find((limit) => limit.name === consumed.limits[0]!.name)?.remaining).toBe(consumed.limits[0]!.remaining);

      const reservation = await tally.reserve(user.id, { amounts: { tokens: 1000 } });
      expect(reservation.allowed).toBe(true);
      const limits = await reservation.hold!.settle({ amounts: { tokens: 250 } });
      expect(limits.length).toBeGreaterThan(0);
      expect(await tokensUsed(api(), user.token)).toBe(350);

      const released = await tally.reserve(user.id, { amounts: { tokens: 5000 } });
      await released.hold!.release();
      expect(await tokensUsed(api(), user.token)).toBe(350);

      const session = await tally.verifySession(user.token);
      expect(session).toMatchObject({ userId: user.id, sessionId: user.sessionId, tier: 'pro' });
      await expect(tally.verifySession(`${user.token.slice(0, -4)}AAAA`)).rejects.toBeInstanceOf(UnauthenticatedError);

      await expect(tally.consume('uaaaaaaaaaaaaaaaaaaaa')).rejects.toBeInstanceOf(NotFoundError);
      await expect(tally.consume('not-a-user-id')).rejects.toMatchObject({ name: 'InvalidRequestError', status: 400 });

      const key = `client-${transport}-${user.id}`;
      expect(await tally.limiter.check(key, { limit: 1, windowMs: 60_000 })).toMatchObject({ allowed: true, remaining: 0 });
      expect(await tally.limiter.check(key, { limit: 1, windowMs: 60_000 })).toMatchObject({ allowed: false });

      // Usage is recorded as the owner writes its state behind, within a flush interval.
      const tokensRecorded = async () => {
        const usage = await tally.usage({ start: new Date(Date.now() - 3_600_000), userId: user.id, groupBy: ['user', 'resource'] });
        return usage.data.flatMap((bucket) => bucket.results).find((result) => result.resource === 'tokens' && result.userId === user.id)?.amount;
      };
      await waitFor(async () => (await tokensRecorded()) === 350, 10_000);
    },
  );

  it('consumes by the API key a caller presented, and refuses a forged one', async () => {
    const tally = clientFor(transport, 1);
    const user = await newUser('pro');
    const { key } = await createKey(api(), user);
    expect(await tally.consume({ apiKey: key }, { amounts: { tokens: 7 } })).toMatchObject({ allowed: true });
    expect(await tokensUsed(api(), user.token)).toBe(7);
    const forged = `${key.slice(0, -6)}AAAAAA`;
    await expect(tally.consume({ apiKey: forged })).rejects.toBeInstanceOf(UnauthenticatedError);
  });

  it('admits exactly a strict limit to 1000 concurrent calls', async () => {
    const tally = clientFor(transport, 2);
    const user = await newUser('strict');
    const sent = tally.stats.messages;
    const decisions = await Promise.all(Array.from({ length: 1000 }, () => tally.consume(user.id)));
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(LIMIT);
    const refused = decisions.find((decision) => !decision.allowed)!;
    expect(refused).toMatchObject({ denied: 'requests', degraded: false });
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    // One turn's calls: one message (over HTTP a body over 64 KiB would be split; these are not).
    expect(tally.stats.messages - sent).toBe(1);
  });
});

describe('the client over NATS, routed', () => {
  it('sends each turn’s calls straight to their owners: nothing is forwarded between nodes', async () => {
    const users = await Promise.all(Array.from({ length: 12 }, (_, i) => newUser('pro', i)));
    // Every user's actor in memory first: its load is not what this test is about.
    await Promise.all(users.map((user) => tally.consume(user.id)));
    const before = await forwarded();
    const sent = { ...tally.stats };
    const decisions = await Promise.all(users.flatMap((user) => Array.from({ length: 25 }, () => tally.consume(user.id))));
    expect(decisions.every((decision) => decision.allowed)).toBe(true);
    expect(await forwarded()).toBe(before);
    expect(tally.stats.moved).toBe(sent.moved);
    // 300 calls of one turn: one message per owner.
    expect(tally.stats.messages - sent.messages).toBeLessThanOrEqual(ids.length);
  });

  it('loses and double-charges nothing while the user’s shard moves mid-stream', async () => {
    const user = await newUser('roomy');
    const shard = shardOf(user.id);
    const from = (await ownerOf(user.id)) ?? ids[0]!;
    const to = ids.find((id) => id !== from)!;
    let running = true;
    let allowed = 0;
    let sequence = 0;
    const errors: unknown[] = [];
    const stream = (async () => {
      while (running) {
        const batch = Array.from({ length: 20 }, () => tally.consume(user.id, { amounts: { tokens: 1 }, idempotencyKey: `move-${sequence++}` }));
        for (const result of await Promise.allSettled(batch)) {
          if (result.status === 'fulfilled') allowed += result.value.allowed ? 1 : 0;
          else errors.push(result.reason);
        }
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const operator = { NATS_USER: 'tally-operator', NATS_PASSWORD: cluster.natsPasswords!.operator };
    const move = await runClusterCli(cluster.nats.url, ['move', String(shard), to, '--json', '--timeout', '30'], operator);
    expect(move.code, move.out).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    running = false;
    await stream;
    expect(errors).toEqual([]);
    expect(allowed).toBe(sequence);
    expect(await tokensUsed(api(), user.token)).toBe(sequence);
    expect(await ownerOf(user.id)).toBe(to);
    expect(sequence).toBeGreaterThan(1000);
  }, 60_000);

  it('fails a call at its timeout when the owner is frozen, or answers as onUnavailable says', async () => {
    const user = await newUser('strict');
    await tally.consume(user.id);
    const owner = (await ownerOf(user.id))!;
    const node = cluster.nodes.get(owner)!;
    node.child.kill('SIGSTOP');
    try {
      const started = performance.now();
      await expect(tally.consume(user.id, { timeout: 300 })).rejects.toBeInstanceOf(TimeoutError);
      expect(performance.now() - started).toBeLessThan(1500);
      expect(await tally.consume(user.id, { timeout: 300, onUnavailable: 'allow' })).toEqual({ allowed: true, limits: [], degraded: true });
      expect(await tally.consume(user.id, { timeout: 300, onUnavailable: 'deny' })).toMatchObject({ allowed: false, degraded: true });
    } finally {
      node.child.kill('SIGCONT');
    }
  });

  it('fails over to the new owner after the lease when the owner is killed', async () => {
    const user = await newUser('pro');
    await tally.consume(user.id);
    const owner = (await ownerOf(user.id))!;
    cluster.nodes.get(owner)!.child.kill('SIGKILL');
    const answers: string[] = [];
    await waitFor(async () => {
      const decision = await tally.consume(user.id, { timeout: 500, onUnavailable: 'deny' });
      answers.push(decision.degraded ? 'degraded' : 'decided');
      return !decision.degraded && decision.allowed;
    }, 20_000);
    const now = await ownerOf(user.id);
    expect(now).not.toBe(owner);
    expect(answers.at(-1)).toBe('decided');
  }, 40_000);
});
