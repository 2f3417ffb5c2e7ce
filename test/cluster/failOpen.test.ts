/**
 * Fail-open admits only what the node has seen its owner accept: with the owner frozen
 * (SIGSTOP, within its lease), a `fail_open` user's credential that the owner accepted
 * through this node a moment ago is allowed as degraded, while a session revoked since (one,
 * or all of them), a key deleted since, a blocked user, a key with a made-up secret (its MAC
 * checks: it covers only the user and key ids) and a credential this node never saw
 * verified get the strict answer, 503 with Retry-After. The changes are made through another
 * node, so the node under test learns of them only by the owner's announcement.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { shardOf } from '../../src/shards/index.js';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { type Api, apiClient } from '../support/http.js';
import { createKey, createUser, type TestUser } from '../support/tally.js';
import { sleep } from '../support/wait.js';

const ids = ['o1', 'o2', 'o3'];
let cluster: TestCluster;

beforeAll(async () => {
  // Long enough that a forward's 2 s deadline ends well before the others take the shards over.
  cluster = await createTestCluster({ leaseMs: 4000 });
  await cluster.startAll(ids);
}, 60_000);
afterAll(() => cluster?.stop());

const apiOf = (id: string): Api => apiClient(cluster.nodes.get(id)!.baseUrl);
const consume = (id: string, token: string) => apiOf(id)('POST', '/v1/quota/consume', { token, body: { cost: 1 } });

/** A user of the `free` tier (fail_open) whose shard o3 owns. */
async function ownedByO3(): Promise<TestUser> {
  const placement = targetPlacement(ids);
  for (;;) {
    const created = await createUser(apiOf('o1'), { adminToken: cluster.adminToken, tier: 'free' });
    if (placement.get(shardOf(created.id)) === 'o3') return created;
  }
}

/** Seen verified by o1: a consume through o1, decided by the owner o3. */
async function verifiedThroughO1(token: string): Promise<void> {
  expect((await consume('o1', token)).status).toBe(200);
}

describe('fail-open with the owner frozen', () => {
  it('allows only what the node saw its owner accept lately, and nothing revoked, deleted or blocked since', async () => {
    const fresh = await ownedByO3();
    const freshKey = (await createKey(apiOf('o1'), fresh)).key;
    await verifiedThroughO1(fresh.token);
    await verifiedThroughO1(freshKey);
    // The same key id and MAC with a made-up secret: the edge accepts its MAC, only the owner could tell.
    const madeUpKey = `${freshKey.slice(0, freshKey.indexOf('.') + 1)}${'A'.repeat(32)}`;
    expect(madeUpKey).not.toBe(freshKey);

    const revoked = await ownedByO3();
    await verifiedThroughO1(revoked.token);
    expect((await apiOf('o2')('DELETE', `/v1/sessions/${revoked.sessionId}`, { token: revoked.token })).status).toBe(204);

    const loggedOut = await ownedByO3();
    await verifiedThroughO1(loggedOut.token);
    const everywhere = await apiOf('o2')('POST', '/v1/sessions/logout-all', { token: loggedOut.token, body: { keep_current: false } });
    expect(everywhere.status).toBe(200);

    const deleted = await ownedByO3();
    const deletedKey = await createKey(apiOf('o2'), deleted);
    await verifiedThroughO1(deletedKey.key);
    expect((await apiOf('o2')('DELETE', `/v1/keys/${deletedKey.id}`, { token: deleted.token })).status).toBe(204);

    const blocked = await ownedByO3();
    const blockedKey = (await createKey(apiOf('o2'), blocked)).key;
    await verifiedThroughO1(blocked.token);
    await verifiedThroughO1(blockedKey);
    const block = await apiOf('o2')('PATCH', `/v1/admin/users/${blocked.id}`, { token: cluster.adminToken, body: { blocked: true } });
    expect(block.status).toBe(200);

    // The owner's announcements reach o1 over NATS within milliseconds.
    await sleep(300);
    const owner = cluster.nodes.get('o3')!;
    owner.child.kill('SIGSTOP');
    try {
      const sentAt = performance.now();
      const [freshSession, freshApiKey, madeUp, revokedSession, loggedOutSession, deletedApiKey, blockedSession, blockedApiKey, neverSeen] = await Promise.all([
        consume('o1', fresh.token),
        consume('o1', freshKey),
        consume('o1', madeUpKey),
        consume('o1', revoked.token),
        consume('o1', loggedOut.token),
        consume('o1', deletedKey.key),
        consume('o1', blocked.token),
        consume('o1', blockedKey),
        // o2 never carried a request of this user: it has nothing to go on.
        consume('o2', fresh.token),
      ]);
      // All answered before the others could take o3's shards: the owner was unreachable for each.
      expect(performance.now() - sentAt).toBeLessThan(cluster.leaseMs);

      for (const allowed of [freshSession, freshApiKey]) {
        expect(allowed.status).toBe(200);
        expect(allowed.headers.get('tally-degraded')).toBe('1');
        expect(allowed.body).toEqual({ allowed: true, limits: [] });
      }
      const refused = { madeUp, revokedSession, loggedOutSession, deletedApiKey, blockedSession, blockedApiKey, neverSeen };
      for (const [name, answer] of Object.entries(refused)) {
        expect({ name, status: answer.status }).toEqual({ name, status: 503 });
        expect(answer.body.type).toBe('urn:tally:problem:owner-unavailable');
        expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
      }
      const metrics = await (await fetch(`${cluster.nodes.get('o1')!.baseUrl}/metrics`)).text();
      expect(metrics).toMatch(/^tally_quota_degraded_total\{operation="consume"\} 2$/m);
    } finally {
      owner.child.kill('SIGCONT');
    }
  }, 60_000);
});
