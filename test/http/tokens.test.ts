/**
 * One consume for a request and its LLM tokens, on the default tiers as seeded: `requests`
 * (a rate limit without a resource) is charged `cost`, `tokens` (a monthly budget on
 * resource "tokens") is charged `amounts.tokens`, all or nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createUser, startTestNode, type TestNode, type TestUser } from '../support/tally.js';
import { waitFor } from '../support/wait.js';

let t: TestNode & { dropDatabase(): Promise<void> };

beforeAll(async () => {
  t = await startTestNode();
});
afterAll(async () => {
  await t.stop();
  await t.dropDatabase();
});

interface View {
  name: string;
  remaining: number;
  limit: number;
}

const byName = (limits: View[]) => Object.fromEntries(limits.map((limit) => [limit.name, limit.remaining]));
const quota = async (token: string) => byName((await t.api('GET', '/v1/quota', { token })).body.limits);
const consume = (token: string, body: unknown, headers?: Record<string, string>) =>
  t.api('POST', '/v1/quota/consume', { token, body, ...(headers === undefined ? {} : { headers }) });

describe('the default tiers', () => {
  it('count requests and tokens apart', async () => {
    const tiers = (await t.api('GET', '/v1/admin/tiers', { token: t.adminToken })).body.tiers as {
      name: string;
      limits: { name: string; resource?: string }[];
    }[];
    for (const name of ['free', 'pro', 'enterprise']) {
      const tier = tiers.find((candidate) => candidate.name === name)!;
      expect(
        tier.limits.map((limit) => [limit.name, limit.resource]),
        name,
      ).toEqual([
        ['requests', undefined],
        ['tokens', 'tokens'],
      ]);
    }
  });
});

describe.each(['session', 'key'] as const)('a consume of 1 request and 1,500 tokens on the free tier, with a %s', (credential) => {
  let user: TestUser;
  let token: string;
  beforeAll(async () => {
    user = await createUser(t.api);
    token = credential === 'session' ? user.token : (await createKey(t.api, user)).key;
  });

  it('succeeds, leaving the request limit one lower and 98,500 tokens', async () => {
    const res = await consume(token, { cost: 1, amounts: { tokens: 1500 } });
    expect(res.status).toBe(200);
    // A fresh bucket shows its burst (20); the budget is 100,000 a month.
    expect(byName(res.body.limits)).toEqual({ requests: 19, tokens: 98_500 });
    expect(res.headers.get('ratelimit')).toMatch(/^"requests";r=19;t=\d+$/);
    expect(await quota(token)).toMatchObject({ tokens: 98_500 });
  });

  it('is refused with nothing charged once fewer than 1,500 tokens remain', async () => {
    expect((await consume(token, { amounts: { tokens: 97_100 } })).status).toBe(200);
    // Once the bucket is full again, a charged request would show as 19 for a second.
    await waitFor(async () => (await quota(token)).requests === 20, 5000);
    const refused = await consume(token, { cost: 1, amounts: { tokens: 1500 } });
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ type: 'urn:tally:problem:rate-limited' });
    expect(byName(refused.body.limits)).toEqual({ requests: 20, tokens: 1400 });
    // The budget refuses until the month ends: Retry-After says so, in seconds.
    const monthEnd = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() + 1, 1);
    expect(Number(refused.headers.get('retry-after'))).toBeCloseTo((monthEnd - Date.now()) / 1000, -1);
    expect(refused.headers.get('ratelimit')).toMatch(/^"tokens";r=1400;t=\d+$/);
    expect(await quota(token)).toEqual({ requests: 20, tokens: 1400 });
    // What still fits is admitted.
    expect(byName((await consume(token, { cost: 1, amounts: { tokens: 1400 } })).body.limits)).toEqual({ requests: 19, tokens: 0 });
  });
});

describe('reservations of tokens', () => {
  it('hold 4,000 tokens and, settled at 1,200, leave 1,200 charged', async () => {
    const user = await createUser(t.api);
    const held = await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { amounts: { tokens: 4000 } } });
    expect(held.status).toBe(201);
    expect(byName(held.body.limits)).toEqual({ requests: 19, tokens: 96_000 });
    const settled = await t.api('POST', `/v1/quota/reservations/${held.body.id}/settle`, { token: user.token, body: { amounts: { tokens: 1200 } } });
    expect(settled.status).toBe(200);
    expect(byName(settled.body.limits)).toMatchObject({ tokens: 98_800 });
    expect((await quota(user.token)).tokens).toBe(98_800);
  });

  it('will not settle a hold of a request and tokens by `actual` alone, and keep it open', async () => {
    const user = await createUser(t.api);
    const held = await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 1, amounts: { tokens: 4000 } } });
    const settle = (body: unknown) => t.api('POST', `/v1/quota/reservations/${held.body.id}/settle`, { token: user.token, body });
    const guess = await settle({ actual: 1200 });
    expect(guess.status).toBe(422);
    expect(guess.body).toMatchObject({
      type: 'urn:tally:problem:invalid-settlement',
      detail: `hold "${held.body.id}" holds "default" and "tokens": settle it with amounts`,
    });
    expect((await quota(user.token)).tokens).toBe(96_000);
    // Both at once: the request's actual cost and the tokens'.
    const settled = await settle({ actual: 1, amounts: { tokens: 5000 } });
    expect(settled.status).toBe(200);
    expect((await quota(user.token)).tokens).toBe(95_000);
  });

  it('settle a hold of one resource by `actual`, as before', async () => {
    const user = await createUser(t.api);
    const held = await t.api('POST', '/v1/quota/reservations', { token: user.token, body: { cost: 5, resource: 'tokens' } });
    expect(byName(held.body.limits)).toEqual({ requests: 15, tokens: 99_995 });
    const settled = await t.api('POST', `/v1/quota/reservations/${held.body.id}/settle`, { token: user.token, body: { actual: 2 } });
    expect(settled.status).toBe(200);
    expect((await quota(user.token)).tokens).toBe(99_998);
  });
});

describe('refusals that change nothing', () => {
  let user: TestUser;
  beforeAll(async () => {
    user = await createUser(t.api);
  });

  it('answers 422 naming the limit for more tokens than a month holds, without Retry-After', async () => {
    const res = await consume(user.token, { cost: 1, amounts: { tokens: 100_001 } });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('retry-after')).toBeNull();
    expect(res.body).toMatchObject({
      type: 'urn:tally:problem:exceeds-limit',
      limit: 'tokens',
      detail: 'limit "tokens" can never admit as much as this request asks of it; nothing was charged',
    });
    // The request limit's capacity is its burst: 1,500 requests at once can never fit either.
    expect((await consume(user.token, { cost: 1500 })).body.limit).toBe('requests');
    expect(await quota(user.token)).toEqual({ requests: 20, tokens: 100_000 });
  });

  it.each([
    [{ resource: 'tokens', amounts: { tokens: 5 } }, 'amounts names "tokens", the resource that cost is charged to: name each resource once'],
    [{ amounts: { default: 5 } }, 'amounts names "default", the resource that cost is charged to: name each resource once'],
    [{ amounts: { tokens: -1 } }, 'the request body is invalid: /amounts/tokens: Expected integer to be greater or equal to 0'],
    [{ amounts: { tokens: 1.5 } }, 'the request body is invalid: /amounts/tokens: Expected integer'],
    [{ amounts: { tokens: '5' } }, 'the request body is invalid: /amounts/tokens: Expected integer'],
    [{ amounts: { '': 5 } }, 'the request body is invalid: /amounts/: Unexpected property'],
    [{ amounts: [5] }, 'the request body is invalid: /amounts: Expected object'],
    [
      { amounts: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`r${i}`, 1])) },
      'the request body is invalid: /amounts: Expected object to have no more than 32 properties',
    ],
  ])('answers 400 for %j', async (body, detail) => {
    const res = await consume(user.token, body);
    expect(res.status).toBe(400);
    expect(res.body.detail).toBe(detail);
    const held = await t.api('POST', '/v1/quota/reservations', { token: user.token, body });
    expect(held.status).toBe(400);
    expect(await quota(user.token)).toEqual({ requests: 20, tokens: 100_000 });
  });

  it('treats an Idempotency-Key reused with other amounts as a different request', async () => {
    const headers = { 'idempotency-key': 'call-7' };
    const first = await consume(user.token, { amounts: { tokens: 300 } }, headers);
    expect(first.status).toBe(200);
    const again = await consume(user.token, { cost: 1, amounts: { tokens: 300 } }, headers);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect((await consume(user.token, { amounts: { tokens: 301 } }, headers)).status).toBe(422);
    expect((await quota(user.token)).tokens).toBe(99_700);
  });
});
