/**
 * Planned moves under load, on real node processes: a strict limit hammered through every
 * node while a fourth node joins (its shards move to it by planned hand-offs) and while a
 * node leaves with SIGTERM (it drains first) admits exactly its limit, every request gets a
 * decision (200 or 429, never an error), and no usage is lost. Then a kill -9 of an owner:
 * what was flushed before it is exactly what the new owner serves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { shardOf } from '../../src/shards/index.js';
import { createTestCluster, strictLimits, type TestCluster } from '../support/cluster.js';
import { type Api, apiClient } from '../support/http.js';
import { createKey, createUser, type TestUser, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

const LIMIT = 150;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000 });
  await cluster.addTier('strict', strictLimits(LIMIT));
  await cluster.startAll(['h1', 'h2', 'h3']);
}, 60_000);
afterAll(() => cluster?.stop());

const apiOf = (id: string): Api => apiClient(cluster.nodes.get(id)!.baseUrl);

/** Strict users (with a key each) whose shards move between the two placements. */
async function usersMoving(from: string[], to: string[], count: number): Promise<{ user: TestUser; key: string }[]> {
  const before = targetPlacement(from);
  const after = targetPlacement(to);
  const found: { user: TestUser; key: string }[] = [];
  const api = apiOf(from[0]!);
  while (found.length < count) {
    const user = await createUser(api, { adminToken: cluster.adminToken, tier: 'strict' });
    const shard = shardOf(user.id);
    if (before.get(shard) === after.get(shard)) continue;
    found.push({ user, key: (await createKey(api, user)).key });
  }
  return found;
}

interface Hammered {
  statuses: Map<number, number>;
  allowed: Map<string, number>;
}

/**
 * Consumes for every user through every node in `via`, round after round, until `done()`
 * holds and each user has been sent at least twice its limit.
 */
async function hammer(users: { user: TestUser; key: string }[], via: string[], done: () => boolean): Promise<Hammered> {
  const statuses = new Map<number, number>();
  const allowed = new Map(users.map(({ user }) => [user.id, 0]));
  const apis = via.map(apiOf);
  for (let sent = 0; !done() || sent < 2 * LIMIT; sent += apis.length) {
    const answers = await Promise.all(
      users.flatMap(({ user, key }) =>
        apis.map(async (api) => {
          const answer = await api('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens: 1 } } });
          return { id: user.id, status: answer.status };
        }),
      ),
    );
    for (const { id, status } of answers) {
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status === 200) allowed.set(id, allowed.get(id)! + 1);
    }
    await sleep(5);
  }
  return { statuses, allowed };
}

async function expectExact(users: { user: TestUser; key: string }[], result: Hammered, via: string): Promise<void> {
  // Only decisions: no 503, no 500, no refused connection.
  expect([...result.statuses.keys()].sort()).toEqual([200, 429]);
  for (const { user, key } of users) {
    expect(result.allowed.get(user.id)).toBe(LIMIT);
    // Every admitted consume is in the owner's state: none lost on the way.
    expect(await tokensUsed(apiOf(via), key)).toBe(LIMIT);
  }
}

describe('planned moves under load', () => {
  it('admits exactly a strict limit while a joining node takes its share', async () => {
    const users = await usersMoving(['h1', 'h2', 'h3'], ['h1', 'h2', 'h3', 'h4'], 6);
    let settled = false;
    const joining = (async () => {
      await cluster.start('h4');
      await waitFor(() => cluster.settledOn(['h1', 'h2', 'h3', 'h4']), 30_000);
      settled = true;
    })();
    const result = await hammer(users, ['h1', 'h2', 'h3'], () => settled);
    await joining;
    await expectExact(users, result, 'h4');
  }, 90_000);

  it('admits exactly a strict limit while a node drains on SIGTERM, which waits for no lease', async () => {
    const users = await usersMoving(['h1', 'h2', 'h3', 'h4'], ['h1', 'h3', 'h4'], 6);
    const leaving = cluster.nodes.get('h2')!;
    let exited = false;
    const stoppedAt = performance.now();
    leaving.child.kill('SIGTERM');
    const leave = leaving.exited.then((code) => {
      exited = true;
      return { code, ms: performance.now() - stoppedAt };
    });
    const result = await hammer(users, ['h1', 'h3', 'h4'], () => exited);
    const { code, ms } = await leave;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(cluster.leaseMs);
    expect(leaving.logs.some((line) => line.includes('drained: every shard handed off'))).toBe(true);
    await waitFor(() => cluster.settledOn(['h1', 'h3', 'h4']), 10_000);
    await expectExact(users, result, 'h1');
  }, 90_000);

  it('serves exactly the flushed usage after a kill -9 of the owner, within a lease and 2 s', async () => {
    const placement = targetPlacement(['h1', 'h3', 'h4']);
    let victim: { user: TestUser; key: string } | undefined;
    while (victim === undefined) {
      const user = await createUser(apiOf('h1'), { adminToken: cluster.adminToken, tier: 'strict' });
      if (placement.get(shardOf(user.id)) === 'h4') victim = { user, key: (await createKey(apiOf('h1'), user)).key };
    }
    for (let i = 0; i < 40; i++) {
      const answer = await apiOf(i % 2 === 0 ? 'h1' : 'h3')('POST', '/v1/quota/consume', { token: victim.key, body: { amounts: { tokens: 5 } } });
      expect(answer.status).toBe(200);
    }
    // Written by the owner's write-behind: the state row holds what was consumed.
    await waitFor(async () => {
      const text = await (await fetch(`${cluster.nodes.get('h4')!.baseUrl}/metrics`)).text();
      return /^tally_actors_dirty 0$/m.test(text);
    }, 5000);
    const owner = cluster.nodes.get('h4')!;
    const killedAt = performance.now();
    owner.child.kill('SIGKILL');
    await owner.exited;
    await waitFor(async () => (await apiOf('h1')('GET', '/v1/quota', { token: victim!.key })).status === 200, cluster.leaseMs + 5000);
    expect(performance.now() - killedAt).toBeLessThan(cluster.leaseMs + 2000);
    expect(await tokensUsed(apiOf('h3'), victim.key)).toBe(200);
  }, 60_000);
});
