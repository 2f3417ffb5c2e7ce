import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createUser, startTestNode, type TestNode, type TestUser } from '../support/tally.js';

let t: TestNode & { dropDatabase(): Promise<void> };

beforeAll(async () => {
  t = await startTestNode();
  // A small tier so that tests reach its limits quickly.
  const tier = await t.api('PUT', '/v1/admin/tiers/tiny', {
    token: t.adminToken,
    body: {
      limits: [
        { name: 'requests', kind: 'rate', limit: 60, period_ms: 60_000, burst: 60 },
        { name: 'tokens', kind: 'budget', limit: 100, period: 'month' },
      ],
    },
  });
  expect(tier.status).toBe(200);
});
afterAll(async () => {
  await t.stop();
  await t.dropDatabase();
});

async function tinyUser(): Promise<TestUser> {
  return createUser(t.api, { tier: 'tiny', adminToken: t.adminToken });
}

describe('POST /v1/quota/consume', () => {
  it('admits within the limits, with IETF and legacy rate-limit headers', async () => {
    const user = await tinyUser();
    const res = await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 10 } });
    expect(res.status).toBe(200);
    expect(res.body.allowed).toBe(true);
    const byName = Object.fromEntries(res.body.limits.map((l: { name: string }) => [l.name, l]));
    expect(byName.tokens).toMatchObject({ kind: 'budget', limit: 100, remaining: 90 });
    expect(res.headers.get('ratelimit-policy')).toMatch(/^"\w+";q=\d+;w=\d+$/);
    expect(res.headers.get('ratelimit')).toMatch(/^"\w+";r=\d+;t=\d+$/);
    expect(res.headers.get('x-ratelimit-limit')).toBeTruthy();
    expect(res.headers.get('x-ratelimit-remaining')).toBeTruthy();
    expect(Number(res.headers.get('x-ratelimit-reset'))).toBeGreaterThan(Date.now() / 1000 - 1);
    // The headers go out as one block (src/http/respond.ts): each must arrive once, intact.
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('x-request-id')).toMatch(/^[\w-]+$/);
  });

  it('refuses with 429, Retry-After and the limits, and charges nothing (all or nothing)', async () => {
    const user = await tinyUser();
    const tokensLeft = async () =>
      (await t.api('GET', '/v1/quota', { token: user.token })).body.limits.find((l: { name: string }) => l.name === 'tokens').remaining;
    // The budget would admit 95, the rate limit (burst 60) never will: 422, nothing is charged.
    const never = await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 95 } });
    expect(never.status).toBe(422);
    expect(never.body).toMatchObject({ type: 'urn:tally:problem:exceeds-limit', limit: 'requests' });
    expect(never.headers.get('retry-after')).toBeNull();
    expect(await tokensLeft()).toBe(100);
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 60 } })).status).toBe(200);
    const refused = await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 50 } });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get('ratelimit')).toMatch(/r=0/);
    expect(refused.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(40);
    expect(await tokensLeft()).toBe(40);
  });

  it('returns the first answer for a repeated Idempotency-Key and charges once', async () => {
    const user = await tinyUser();
    const headers = { 'idempotency-key': 'order-42' };
    const first = await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 3 }, headers });
    const again = await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 3 }, headers });
    expect(again.status).toBe(200);
    expect(again.body.limits).toEqual(first.body.limits);
    const quota = await t.api('GET', '/v1/quota', { token: user.token });
    expect(quota.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(97);
    const mismatch = await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 4 }, headers });
    expect(mismatch.status).toBe(422);
  });

  it('applies a resource-scoped limit only to consumes naming it', async () => {
    const user = await tinyUser();
    const patch = await t.api('PATCH', `/v1/admin/users/${user.id}`, {
      token: t.adminToken,
      body: { overrides: [{ name: 'images', kind: 'window', limit: 1, window_ms: 60_000, resource: 'images' }] },
    });
    expect(patch.status).toBe(200);
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { resource: 'images' } })).status).toBe(200);
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { resource: 'images' } })).status).toBe(429);
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { resource: 'text' } })).status).toBe(200);
  });

  it.each([[{ cost: 0 }], [{ cost: -1 }], [{ cost: 1.5 }], [{ cost: 2 ** 53 }], [{ cost: '1' }], [{ resource: '' }]])(
    'answers 400 for %j and changes nothing',
    async (body) => {
      const user = await tinyUser();
      const res = await t.api('POST', '/v1/quota/consume', { token: user.token, body });
      expect(res.status).toBe(400);
      const quota = await t.api('GET', '/v1/quota', { token: user.token });
      expect(quota.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(100);
    },
  );

  it('accepts a cost of 2^53-1 and refuses it as over capacity', async () => {
    const user = await tinyUser();
    const res = await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: Number.MAX_SAFE_INTEGER } });
    expect(res.status).toBe(422);
    expect(res.body.detail).toBe('limit "requests" can never admit as much as this request asks of it; nothing was charged');
  });

  it('works with an API key as with a session', async () => {
    const user = await tinyUser();
    const key = await createKey(t.api, user);
    const res = await t.api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 2 } });
    expect(res.status).toBe(200);
    const quota = await t.api('GET', '/v1/quota', { token: user.token });
    expect(quota.body).toMatchObject({ tier: 'tiny' });
    expect(quota.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(98);
  });
});

describe('reservations', () => {
  it('holds, then settles to the actual cost (refund)', async () => {
    const user = await tinyUser();
    const held = await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 50 } });
    expect(held.status).toBe(201);
    expect(held.body.id).toMatch(/^r/);
    expect(held.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(50);
    const settled = await t.api('POST', `/v1/quota/reservations/${held.body.id}/settle`, { token: user.token, body: { actual: 20 } });
    expect(settled.status).toBe(200);
    expect(settled.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(80);
    const twice = await t.api('POST', `/v1/quota/reservations/${held.body.id}/settle`, { token: user.token, body: { actual: 20 } });
    expect(twice.status).toBe(404);
  });

  it('refuses a hold that does not fit now with 429, and one that never can with 422', async () => {
    const user = await tinyUser();
    expect((await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 60 } })).status).toBe(201);
    const res = await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 30 } });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBeTruthy();
    const tooBig = await tinyUser();
    const over = await t.api('POST', '/v1/quota/reservations', { token: tooBig.token, body: { cost: 101 } });
    expect(over.status).toBe(422);
    expect(over.body.limit).toBe('requests');
    expect(over.headers.get('retry-after')).toBeNull();
  });

  it('releases a hold', async () => {
    const user = await tinyUser();
    const held = await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 30 } });
    expect((await t.api('DELETE', `/v1/quota/reservations/${held.body.id}`, { token: user.token })).status).toBe(204);
    const quota = await t.api('GET', '/v1/quota', { token: user.token });
    expect(quota.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(100);
    expect((await t.api('DELETE', `/v1/quota/reservations/${held.body.id}`, { token: user.token })).status).toBe(404);
  });

  it('does not let another user settle or release a hold', async () => {
    const a = await tinyUser();
    const b = await tinyUser();
    const held = await t.api('POST', '/v1/quota/reservations', { token: a.token, body: { cost: 10 } });
    expect((await t.api('POST', `/v1/quota/reservations/${held.body.id}/settle`, { token: b.token, body: { actual: 0 } })).status).toBe(404);
    expect((await t.api('DELETE', `/v1/quota/reservations/${held.body.id}`, { token: b.token })).status).toBe(404);
  });

  it('validates ttl_ms and actual', async () => {
    const user = await tinyUser();
    expect((await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 1, ttl_ms: 10 } })).status).toBe(400);
    expect((await t.api('POST', '/v1/quota/reservations', { token: user.token, body: {} })).status).toBe(400);
    expect((await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 0 } })).status).toBe(400);
    expect((await t.api('POST', '/v1/quota/reservations/rnothing/settle', { token: user.token, body: {} })).status).toBe(400);
    expect((await t.api('POST', '/v1/quota/reservations/rnothing/settle', { token: user.token, body: { actual: -1 } })).status).toBe(400);
  });
});

describe('POST /v1/limiter/check', () => {
  it('needs the service token', async () => {
    const res = await t.api('POST', '/v1/limiter/check', { body: { key: 'k', limit: 1, window_ms: 1000 } });
    expect(res.status).toBe(401);
    const user = await tinyUser();
    expect((await t.api('POST', '/v1/limiter/check', { token: user.token, body: { key: 'k', limit: 1, window_ms: 1000 } })).status).toBe(401);
  });

  it('answers 200 either way and counts per key', async () => {
    const check = (key: string) => t.api('POST', '/v1/limiter/check', { token: t.serviceToken, body: { key, limit: 2, window_ms: 60_000 } });
    const first = await check('ip:1.2.3.4');
    expect(first.body).toMatchObject({ allowed: true, remaining: 1 });
    expect((await check('ip:1.2.3.4')).body).toMatchObject({ allowed: true, remaining: 0 });
    const third = await check('ip:1.2.3.4');
    expect(third.status).toBe(200);
    expect(third.body.allowed).toBe(false);
    expect(Date.parse(third.body.reset_at)).toBeGreaterThan(Date.now());
    expect((await check('ip:5.6.7.8')).body.allowed).toBe(true);
  });

  it('keeps service keys out of the node’s own counters: they cannot lock a user out', async () => {
    const victim = await tinyUser();
    const charge = (key: string, limit: number) =>
      t.api('POST', '/v1/limiter/check', { token: t.serviceToken, body: { key, limit, window_ms: 900_000, cost: limit } });
    // The keys the login counters had before they moved into namespaces, charged to their limits.
    expect((await charge(`login-email:${victim.email.toLowerCase()}`, 10)).body.allowed).toBe(true);
    expect((await charge('login-ip:127.0.0.1', 100)).body.allowed).toBe(true);
    expect((await charge('anon:127.0.0.1', 1_000_000)).body.allowed).toBe(true);
    const login = await t.api('POST', '/v1/sessions', { body: { email: victim.email, password: victim.password } });
    expect(login.status).toBe(201);
  });
});
