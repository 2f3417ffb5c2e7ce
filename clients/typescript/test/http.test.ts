/**
 * @tally/client over HTTP (Tally's service routes, the service token), and the Hono
 * middleware on a real Hono app served by Node's HTTP server, both against a real node on
 * the local PostgreSQL. The rate-limit headers are read with an RFC 9651 parser.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import { Hono } from 'hono';
import { parseList } from 'structured-headers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createUser, tokensUsed, useTestNode } from '../../../test/support/tally.js';
import { waitFor } from '../../../test/support/wait.js';
import { tallyLimit } from '../src/hono.js';
import { NotFoundError, TallyClient, TimeoutError, UnauthenticatedError, UnavailableError } from '../src/index.js';

const LIMIT = 3;
const node = useTestNode();
let tally: TallyClient;

beforeAll(async () => {
  const { api, adminToken, baseUrl, serviceToken } = node();
  const tier = (name: string, limit: number) =>
    api('PUT', `/v1/admin/tiers/${name}`, {
      token: adminToken,
      body: {
        limits: [
          { name: 'requests', kind: 'rate', limit, period_ms: 3_600_000, burst: limit },
          { name: 'tokens', kind: 'budget', limit: 1_000_000, period: 'month', resource: 'tokens' },
        ],
      },
    });
  expect((await tier('strict', LIMIT)).status).toBe(200);
  expect((await tier('hundred', 100)).status).toBe(200);
  tally = TallyClient.http({ url: baseUrl, token: serviceToken });
});

const newUser = (tier: string) => createUser(node().api, { adminToken: node().adminToken, tier });

describe('the client over HTTP', () => {
  it('answers every call, typed, with the service token', async () => {
    const user = await newUser('pro');
    expect(tally.routed).toBe(false);
    expect(await tally.consume(user.id, { amounts: { tokens: 40 } })).toMatchObject({ allowed: true, degraded: false });
    expect((await tally.get(user.id)).tier).toBe('pro');
    const held = await tally.reserve(user.id, { amounts: { tokens: 100 } });
    await held.hold!.settle({ amounts: { tokens: 10 } });
    const released = await tally.reserve(user.id, { amounts: { tokens: 100 } });
    await released.hold!.release();
    expect(await tokensUsed(node().api, user.token)).toBe(50);
    expect(await tally.verifySession(user.token)).toMatchObject({ userId: user.id, tier: 'pro' });
    await expect(tally.verifySession('not-a-token')).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(tally.get('uaaaaaaaaaaaaaaaaaaaa')).rejects.toBeInstanceOf(NotFoundError);
    expect(await tally.limiter.check(`http-${user.id}`, { limit: 1, windowMs: 60_000 })).toMatchObject({ allowed: true });
    expect(await tally.limiter.check(`http-${user.id}`, { limit: 1, windowMs: 60_000 })).toMatchObject({ allowed: false });
    await waitFor(async () => {
      const usage = await tally.usage({ start: new Date(Date.now() - 3_600_000), userId: user.id, groupBy: ['resource'] });
      return usage.data.flatMap((bucket) => bucket.results).find((result) => result.resource === 'tokens')?.amount === 50;
    }, 10_000);
    const key = await createKey(node().api, user);
    expect(await tally.consume({ apiKey: key.key })).toMatchObject({ allowed: true });
  });

  it('refuses a wrong service token', async () => {
    const wrong = TallyClient.http({ url: node().baseUrl, token: 'not-the-service-token' });
    await expect(wrong.get('uaaaaaaaaaaaaaaaaaaaa')).rejects.toBeInstanceOf(UnauthenticatedError);
  });

  it('admits exactly a strict limit to 1000 concurrent calls, batched into few requests', async () => {
    const user = await newUser('hundred');
    const sent = tally.stats.messages;
    const decisions = await Promise.all(Array.from({ length: 1000 }, () => tally.consume(user.id)));
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(100);
    expect(tally.stats.messages - sent).toBe(1);
  });

  it('times out a call to a server that never answers, and says when nothing listens', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket)); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const stuck = TallyClient.http({ url: `http://127.0.0.1:${port}`, token: 'x'.repeat(16) });
      await expect(stuck.consume('uaaaaaaaaaaaaaaaaaaaa', { timeout: 200 })).rejects.toBeInstanceOf(TimeoutError);
      expect(await stuck.consume('uaaaaaaaaaaaaaaaaaaaa', { timeout: 200, onUnavailable: 'allow' })).toEqual({ allowed: true, limits: [], degraded: true });
    } finally {
      silent.close();
      for (const socket of sockets) socket.destroy();
    }
    const nobody = TallyClient.http({ url: `http://127.0.0.1:${port}`, token: 'x'.repeat(16) });
    await expect(nobody.get('uaaaaaaaaaaaaaaaaaaaa', { timeout: 500 })).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe('the Hono middleware', () => {
  let server: ServerType;
  let base: string;

  beforeAll(async () => {
    const app = new Hono();
    app.use('/api/*', tallyLimit({ client: tally }));
    app.get('/api/hello', (c) => c.json({ hello: 'world' }));
    app.use('/by-user/*', tallyLimit({ client: tally, identify: (c) => c.req.header('x-user-id') ?? null, charge: { amounts: { tokens: 5 } } }));
    app.get('/by-user/hello', (c) => c.text('hi'));
    app.use('/open/*', tallyLimit({ client: tally, anonymous: 'allow' }));
    app.get('/open/hello', (c) => c.text('open'));
    await new Promise<void>((resolve) => {
      server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
        base = `http://127.0.0.1:${info.port}`;
        resolve();
      });
    });
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('lets a caller through with RateLimit headers, then answers 429 problem+json with Retry-After', async () => {
    const user = await newUser('strict');
    const { key } = await createKey(node().api, user);
    const get = () => fetch(`${base}/api/hello`, { headers: { authorization: `Bearer ${key}` } });
    for (let i = 0; i < LIMIT; i++) {
      const ok = await get();
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ hello: 'world' });
      const [policy] = parseList(ok.headers.get('ratelimit-policy')!);
      expect(policy![0]).toBe('requests');
      expect(policy![1].get('q')).toBe(LIMIT);
      const [state] = parseList(ok.headers.get('ratelimit')!);
      expect(state![0]).toBe('requests');
      expect(state![1].get('r')).toBe(LIMIT - 1 - i);
      expect(state![1].get('t')).toBeGreaterThan(0);
    }
    const refused = await get();
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    const [state] = parseList(refused.headers.get('ratelimit')!);
    expect(state![1].get('r')).toBe(0);
    expect(await refused.json()).toMatchObject({ type: 'urn:tally:problem:rate-limited', status: 429, title: 'Too Many Requests' });
  });

  it('refuses a request with no key, or a forged one, with 401; lets it through where anonymous is allowed', async () => {
    const none = await fetch(`${base}/api/hello`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(await none.json()).toMatchObject({ status: 401, type: 'urn:tally:problem:unauthenticated' });
    const user = await newUser('pro');
    const { key } = await createKey(node().api, user);
    const forged = await fetch(`${base}/api/hello`, { headers: { authorization: `Bearer ${key.slice(0, -6)}AAAAAA` } });
    expect(forged.status).toBe(401);
    const open = await fetch(`${base}/open/hello`);
    expect(open.status).toBe(200);
    expect(open.headers.get('ratelimit')).toBeNull();
  });

  it('charges whoever `identify` names, what `charge` says', async () => {
    const user = await newUser('pro');
    const answer = await fetch(`${base}/by-user/hello`, { headers: { 'x-user-id': user.id } });
    expect(answer.status).toBe(200);
    expect(await answer.text()).toBe('hi');
    expect(parseList(answer.headers.get('ratelimit')!)).toHaveLength(1);
    expect(await tokensUsed(node().api, user.token)).toBe(5);
  });
});
