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
import { deriveKeys } from '../../src/node/secrets.js';
import { hashApiKey, issueApiKey, newUserId } from '../../src/shards/index.js';
import { metric } from '../support/metrics.js';
import { createKey, createUser, type StartedNode, startTestNode } from '../support/tally.js';

let t: StartedNode;
let sql: postgres.Sql;

const base32 = (length: number) => Array.from(randomBytes(length), (byte) => 'abcdefghijklmnopqrstuvwxyz234567'[byte & 31]).join('');
const secret = () => randomBytes(32).toString('base64url');
const userLoads = () => metric(t.api, 'tally_store_loads_total', { kind: 'user' });
const consumeWith = (token: string) => t.api('POST', '/v1/quota/consume', { token, body: { cost: 1 } });

beforeAll(async () => {
  t = await startTestNode({ backend: 'postgres' });
  sql = postgres(t.databaseUrl!, { max: 1, onnotice: () => {} });
});
afterAll(async () => {
  await sql.end();
  await t.stop();
  await t.dropDatabase();
});

describe('forged API keys', () => {
  it('refuses 2,000 keys with distinct made-up user ids with 401, loading nothing', async () => {
    const before = await userLoads();
    const forged = Array.from(
      { length: 2000 },
      (_, i) =>
        i % 2 === 0
          ? `tk_u${base32(20)}_k${base32(12)}_${randomBytes(12).toString('base64url')}_${secret()}` // a MAC that does not verify
          : `tk_u${base32(20)}_k${base32(12)}_${secret()}`, // the format before MACs, with an id the database never listed
    );
    for (let i = 0; i < forged.length; i += 100) {
      const answers = await Promise.all(forged.slice(i, i + 100).map(consumeWith));
      for (const res of answers) {
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tally"');
        expect(res.body.detail).toBe('invalid API key');
      }
    }
    expect((await userLoads()) - before).toBeLessThanOrEqual(2);
  });

  it('loads a user named by a key with a valid MAC once, and remembers that it does not exist', async () => {
    const macKey = deriveKeys((await readFile(join(t.dataDir, 'key-secret'), 'utf8')).trim()).apiKeyMac;
    const ghost = issueApiKey(newUserId(), macKey).key;
    const before = await userLoads();
    for (let i = 0; i < 20; i++) expect((await consumeWith(ghost)).status).toBe(401);
    expect((await userLoads()) - before).toBe(1);
  });
});

describe('keys issued before keys carried a MAC', () => {
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
    expect((await consumeWith(legacy)).status).toBe(200);
    const listed = await t.api('GET', '/v1/keys', { token: user.token });
    expect(listed.body.keys.map((key: { id: string }) => key.id)).toContain(keyId);
    // The same user and another key id, in the old format: not a key the database listed.
    expect((await consumeWith(`tk_${user.id}_k${base32(12)}_${secret()}`)).status).toBe(401);
    // Deleted, it is refused like any other.
    expect((await t.api('DELETE', `/v1/keys/${keyId}`, { token: user.token })).status).toBe(204);
    expect((await consumeWith(legacy)).status).toBe(401);
  });
});
