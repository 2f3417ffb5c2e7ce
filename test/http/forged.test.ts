/**
 * Forged credentials are refused at the edge, without a database load: a prober sending
 * well-shaped keys with made-up user ids learns nothing and costs the node an HMAC each.
 * Keys issued before keys carried a MAC keep working.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/credentials/index.js';
import { hashApiKey, issueApiKey, newUserId, parseApiKey } from '../../src/shards/index.js';
import { metric } from '../support/metrics.js';
import { createKey, createUser, type StartedNode, startTestNode } from '../support/tally.js';

let t: StartedNode;
let sql: postgres.Sql;

const base32 = (length: number) => Array.from(randomBytes(length), (byte) => 'abcdefghijklmnopqrstuvwxyz234567'[byte & 31]).join('');
const secret = () => randomBytes(32).toString('base64url');
const userLoads = (node: StartedNode) => metric(node.api, 'tally_store_loads_total', { kind: 'user' });
const consumeWith = (node: StartedNode, token: string) => node.api('POST', '/v1/quota/consume', { token, body: { cost: 1 } });

describe.each(['postgres', 'pglite'] as const)('forged API keys on %s', (backend) => {
  let node: StartedNode;
  beforeAll(async () => {
    node = await startTestNode({ backend });
  });
  afterAll(async () => {
    await node.stop();
    await node.dropDatabase();
  });

  it('refuses 2,000 keys with distinct made-up user ids with 401, loading nothing', async () => {
    const before = await userLoads(node);
    const forged = Array.from(
      { length: 2000 },
      (_, i) =>
        i % 2 === 0
          ? `tk_u${base32(20)}_k${base32(12)}_${randomBytes(8).toString('base64url')}.${randomBytes(24).toString('base64url')}` // a MAC that does not verify
          : `tk_u${base32(20)}_k${base32(12)}_${secret()}`, // the format before MACs, with an id the database never listed
    );
    for (let i = 0; i < forged.length; i += 100) {
      const answers = await Promise.all(forged.slice(i, i + 100).map((token) => consumeWith(node, token)));
      for (const res of answers) {
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tally"');
        expect(res.body.detail).toBe('invalid API key');
      }
    }
    expect((await userLoads(node)) - before).toBe(0);
  });

  it('refuses a forged key for a user whose actor is here, by its hash, and tells a blocked user apart only to the real key', async () => {
    const tier = await node.api('PUT', '/v1/admin/tiers/metered', {
      token: node.adminToken,
      body: { limits: [{ name: 'tokens', kind: 'budget', limit: 100, period: 'month' }] },
    });
    expect(tier.status).toBe(200);
    const user = await createUser(node.api, { tier: 'metered', adminToken: node.adminToken });
    const { key } = await createKey(node.api, user);
    expect((await consumeWith(node, key)).status).toBe(200); // the actor is active: the fast path checks the hash
    // The key's routing part and secret with another MAC: well shaped, and not the key issued.
    const mac = parseApiKey(key)!.mac!;
    const forged = key.replace(`_${mac}.`, `_${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}.`);
    // The key's MAC with another secret: its MAC holds, its hash does not.
    const wrongSecret = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    expect(parseApiKey(forged)).not.toBeNull();
    expect(parseApiKey(wrongSecret)).not.toBeNull();
    for (let i = 0; i < 3; i++) {
      const refused = await consumeWith(node, forged);
      expect(refused.status).toBe(401);
      expect(refused.body.detail).toBe('invalid API key');
    }
    expect((await node.api('PATCH', `/v1/admin/users/${user.id}`, { token: node.adminToken, body: { blocked: true } })).status).toBe(200);
    // Blocked: the real key is told so, a forged one learns nothing.
    expect((await consumeWith(node, key)).status).toBe(403);
    expect((await consumeWith(node, forged)).status).toBe(401);
    expect((await consumeWith(node, wrongSecret)).status).toBe(401);
    // Nothing was charged by the refusals: the one allowed consume is all there is.
    expect((await node.api('PATCH', `/v1/admin/users/${user.id}`, { token: node.adminToken, body: { blocked: false } })).status).toBe(200);
    const quota = await node.api('GET', '/v1/quota', { token: user.token });
    expect(quota.status).toBe(200);
    const budget = (quota.body.limits as { kind: string; limit: number; remaining: number }[]).find((limit) => limit.kind === 'budget')!;
    expect(budget.limit - budget.remaining).toBe(1);
  });

  it('loads a user named by a key with a valid MAC once, and remembers that it does not exist', async () => {
    const macKey = deriveKeys((await readFile(join(node.dataDir, 'key-secret'), 'utf8')).trim()).apiKeyMac;
    const ghost = issueApiKey(newUserId(), macKey).key;
    const before = await userLoads(node);
    for (let i = 0; i < 20; i++) expect((await consumeWith(node, ghost)).status).toBe(401);
    expect((await userLoads(node)) - before).toBe(1);
  });
});

describe('keys issued before keys carried a MAC', () => {
  beforeAll(async () => {
    t = await startTestNode({ backend: 'postgres' });
    sql = postgres(t.databaseUrl!, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql.end();
    await t.stop();
    await t.dropDatabase();
  });

  it('keep working after the upgrade, while made-up ones in that format are refused', async () => {
    const user = await createUser(t.api);
    await createKey(t.api, user); // the user's actor is active; the legacy key is added behind its back
    const keyId = `k${base32(12)}`;
    const legacy = `tk_${user.id}_${keyId}_${secret()}`;
    await sql`
      insert into api_keys (id, user_id, prefix, hash, name, scopes, created_at, signed)
      values (${keyId}, ${user.id}, ${`tk_${user.id}_${keyId}`}, ${hashApiKey(legacy)}, 'old', '{quota}', now(), false)`;
    // The node learns the ids of unsigned keys when it starts, as after an upgrade.
    await t.stop();
    const drop = t.dropDatabase;
    t = { ...(await startTestNode({ backend: 'postgres', databaseUrl: t.databaseUrl!, dataDir: t.dataDir })), dropDatabase: drop };
    expect((await consumeWith(t, legacy)).status).toBe(200);
    const listed = await t.api('GET', '/v1/keys', { token: user.token });
    expect(listed.body.keys.map((key: { id: string }) => key.id)).toContain(keyId);
    // The same user and another key id, in the old format: not a key the database listed.
    expect((await consumeWith(t, `tk_${user.id}_k${base32(12)}_${secret()}`)).status).toBe(401);
    // The listed key id with made-up user ids: refused at the edge, nothing loaded.
    const before = await userLoads(t);
    for (let i = 0; i < 50; i++) expect((await consumeWith(t, `tk_u${base32(20)}_${keyId}_${secret()}`)).status).toBe(401);
    expect((await userLoads(t)) - before).toBe(0);
    // Deleted, it is refused like any other.
    expect((await t.api('DELETE', `/v1/keys/${keyId}`, { token: user.token })).status).toBe(204);
    expect((await consumeWith(t, legacy)).status).toBe(401);
  });
});
