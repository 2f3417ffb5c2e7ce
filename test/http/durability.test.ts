/**
 * What survives a restart. After SIGTERM, everything: sessions, keys, preferences, budget
 * usage, blocks. After kill -9, everything written through, and every unit of usage older
 * than one flush interval.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/http.js';
import { createTestDatabase } from '../support/postgres.js';
import { killAllNodes, spawnNode } from '../support/process.js';
import { createKey, createUser, tokensUsed } from '../support/tally.js';
import { makeTempDir } from '../support/tmp.js';

const FLUSH_MS = 200;
const adminToken = `admin-${randomBytes(12).toString('hex')}`;
let database: { url: string; drop(): Promise<void> };
let env: Record<string, string>;

beforeAll(async () => {
  database = await createTestDatabase();
  env = {
    DATABASE_URL: database.url,
    TALLY_DATA_DIR: await makeTempDir(),
    TALLY_ADMIN_TOKEN: adminToken,
    TALLY_FLUSH_INTERVAL_MS: String(FLUSH_MS),
  };
});
afterAll(async () => {
  await killAllNodes();
  await database.drop();
});

describe.each(['postgres', 'pglite'] as const)('restart on %s', (backend) => {
  const envFor = async () => (backend === 'postgres' ? env : { ...env, DATABASE_URL: '', TALLY_DATA_DIR: await makeTempDir() });

  it('keeps sessions, keys, preferences, usage and blocks after SIGTERM', async () => {
    const nodeEnv = await envFor();
    const first = await spawnNode(nodeEnv);
    const api = apiClient(first.baseUrl);
    const user = await createUser(api, { adminToken, tier: 'pro' });
    const blocked = await createUser(api, { adminToken, tier: 'pro' });
    const key = await createKey(api, user);
    await api('PUT', '/v1/user/preferences', { token: user.token, body: { theme: 'dark' } });
    for (let i = 0; i < 5; i++)
      expect((await api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1, amounts: { tokens: 7 } } })).status).toBe(200);
    await api('PATCH', `/v1/admin/users/${blocked.id}`, { token: adminToken, body: { blocked: true } });
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = await spawnNode(nodeEnv);
    try {
      const again = apiClient(second.baseUrl);
      expect((await again('GET', '/v1/user/preferences', { token: user.token })).body).toEqual({ theme: 'dark' });
      expect(await tokensUsed(again, key.key)).toBe(35);
      expect((await again('GET', '/v1/sessions', { token: user.token })).status).toBe(200);
      expect((await again('GET', '/v1/user/profile', { token: blocked.token })).status).toBe(403);
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
  });

  it('keeps usage older than one flush interval after kill -9', async () => {
    const nodeEnv = await envFor();
    const first = await spawnNode(nodeEnv);
    const api = apiClient(first.baseUrl);
    const user = await createUser(api, { adminToken, tier: 'pro' });
    const key = await createKey(api, user);
    for (let i = 0; i < 4; i++) await api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1, amounts: { tokens: 10 } } });
    // Three flush intervals: the usage above is older than one interval, so a flush has written it.
    await new Promise((resolve) => setTimeout(resolve, FLUSH_MS * 3));
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await spawnNode(nodeEnv);
    try {
      const again = apiClient(second.baseUrl);
      expect(await tokensUsed(again, key.key)).toBe(40);
      // Written-through state needed no flush at all.
      expect((await again('GET', '/v1/keys', { token: user.token })).body.keys).toHaveLength(1);
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
  });
});
