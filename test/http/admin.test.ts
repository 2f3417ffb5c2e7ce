import { beforeEach, describe, expect, it } from 'vitest';
import { createKey, createUser, type StartedNode, startTestNode, useTestNode } from '../support/tally.js';

const node = useTestNode();
let t: StartedNode;
beforeEach(() => {
  t = node();
});

describe('admin routes', () => {
  it('need the admin token: 401 without, 401 with a user token', async () => {
    const user = await createUser(t.api);
    expect((await t.api('GET', '/v1/admin/tiers')).status).toBe(401);
    expect((await t.api('GET', '/v1/admin/tiers', { token: user.token })).status).toBe(401);
    expect((await t.api('GET', '/v1/admin/tiers', { token: `${t.adminToken}x` })).status).toBe(401);
  });

  it('lists the seeded tiers', async () => {
    const res = await t.api('GET', '/v1/admin/tiers', { token: t.adminToken });
    expect(res.status).toBe(200);
    const names = res.body.tiers.map((tier: { name: string }) => tier.name);
    expect(names).toEqual(expect.arrayContaining(['anonymous', 'free', 'pro', 'enterprise']));
    expect(res.body.tiers.find((tier: { name: string }) => tier.name === 'free').fail_open).toBe(true);
    expect(res.body.tiers.find((tier: { name: string }) => tier.name === 'pro').fail_open).toBe(false);
  });

  it('applies a tier edit to an active user at once', async () => {
    await t.api('PUT', '/v1/admin/tiers/editable', { token: t.adminToken, body: { limits: [{ name: 'tokens', kind: 'budget', limit: 10, period: 'day' }] } });
    const user = await createUser(t.api, { tier: 'editable', adminToken: t.adminToken });
    const key = await createKey(t.api, user);
    expect((await t.api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 8 } })).status).toBe(200);
    expect((await t.api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 8 } })).status).toBe(429);
    const edit = await t.api('PUT', '/v1/admin/tiers/editable', {
      token: t.adminToken,
      body: { limits: [{ name: 'tokens', kind: 'budget', limit: 100, period: 'day' }] },
    });
    expect(edit.status).toBe(200);
    const after = await t.api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 8 } });
    expect(after.status).toBe(200);
    // The counter carried over: 8 + 8 of 100.
    expect(after.body.limits[0].remaining).toBe(84);
  });

  it('refuses invalid tiers with 400', async () => {
    const duplicate = await t.api('PUT', '/v1/admin/tiers/bad', {
      token: t.adminToken,
      body: {
        limits: [
          { name: 'a', kind: 'budget', limit: 1, period: 'day' },
          { name: 'a', kind: 'budget', limit: 2, period: 'day' },
        ],
      },
    });
    expect(duplicate.status).toBe(400);
    const kind = await t.api('PUT', '/v1/admin/tiers/bad', { token: t.adminToken, body: { limits: [{ name: 'a', kind: 'leaky', limit: 1 }] } });
    expect(kind.status).toBe(400);
    const list = await t.api('GET', '/v1/admin/tiers', { token: t.adminToken });
    expect(list.body.tiers.map((tier: { name: string }) => tier.name)).not.toContain('bad');
  });

  it('reads and edits a user', async () => {
    const user = await createUser(t.api);
    const read = await t.api('GET', `/v1/admin/users/${user.id}`, { token: t.adminToken });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id: user.id, tier: 'free', blocked: false, overrides: [] });
    expect(Array.isArray(read.body.limits)).toBe(true);
    const moved = await t.api('PATCH', `/v1/admin/users/${user.id}`, { token: t.adminToken, body: { tier: 'pro' } });
    expect(moved.body.tier).toBe('pro');
    expect((await t.api('PATCH', `/v1/admin/users/${user.id}`, { token: t.adminToken, body: { tier: 'missing' } })).status).toBe(422);
    expect((await t.api('GET', '/v1/admin/users/unobody', { token: t.adminToken })).status).toBe(404);
    expect((await t.api('GET', '/v1/user/profile', { token: user.token })).body.tier).toBe('pro');
  });

  it('shows the single node as the cluster', async () => {
    const res = await t.api('GET', '/v1/admin/cluster', { token: t.adminToken });
    expect(res.status).toBe(200);
    expect(res.body.shards).toMatchObject({ count: 1024, moving: [] });
    expect(res.body.nodes).toHaveLength(1);
    expect(res.body.nodes[0].shards).toBe(1024);
  });

  it('answers 403 on admin routes when no admin token is configured', async () => {
    const bare = await startTestNode({ backend: 'pglite', env: { TALLY_ADMIN_TOKEN: '' }, keepAnonymousLimits: true });
    try {
      const res = await bare.api('GET', '/v1/admin/tiers', { token: 'anything-at-all-here' });
      expect(res.status).toBe(403);
    } finally {
      await bare.stop();
    }
  });
});

describe('anonymous tier', () => {
  it('limits registration per client address', async () => {
    const limited = await startTestNode({ keepAnonymousLimits: true });
    try {
      await limited.api('PUT', '/v1/admin/tiers/anonymous', {
        token: limited.adminToken,
        body: { limits: [{ name: 'requests', kind: 'window', limit: 2, window_ms: 60_000 }] },
      });
      const register = (i: number) => limited.api('POST', '/v1/users', { body: { email: `anon${i}@example.com`, password: 'password1' } });
      expect((await register(1)).status).toBe(201);
      expect((await register(2)).status).toBe(201);
      const third = await register(3);
      expect(third.status).toBe(429);
      expect(third.headers.get('retry-after')).toBeTruthy();
    } finally {
      await limited.stop();
      await limited.dropDatabase();
    }
  });
});
