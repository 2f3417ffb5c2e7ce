/**
 * The service API over HTTP (`POST /v1/service/…`, the service token) on one node
 * (Postgres): the bodies and replies of the NATS subjects — decisions, refusals as replies,
 * batches answered item by item, keys and session tokens checked as the edge checks them —
 * and what a whole request that fails gets: the problem and status NATS gives it. Last, a
 * node in cluster mode answers the same requests over NATS and over HTTP alike.
 */
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric } from '../support/metrics.js';
import { type NatsServer, startNatsServer, stopAllNatsServers } from '../support/natsServer.js';
import { createKey, createUser, type StartedNode, startTestNode, type TestUser, tokensUsed, useTestNode } from '../support/tally.js';
import { waitFor } from '../support/wait.js';

const node = useTestNode();
let t: StartedNode;

const METERED = [
  { name: 'requests', kind: 'rate', limit: 600, period_ms: 60_000, burst: 600 },
  { name: 'tokens', kind: 'budget', limit: 100, period: 'month', resource: 'tokens' },
];

beforeAll(async () => {
  t = node();
  expect((await t.api('PUT', '/v1/admin/tiers/metered', { token: t.adminToken, body: { limits: METERED } })).status).toBe(200);
});

const meteredUser = (): Promise<TestUser> => createUser(t.api, { tier: 'metered', adminToken: t.adminToken });
const service = (path: string, body: unknown) => t.api('POST', `/v1/service/${path}`, { token: t.serviceToken, body });
const UNKNOWN_USER = 'uaaaaaaaaaaaaaaaaaaaa';

describe('POST /v1/service/quota/consume', () => {
  it('decides one item as tally.v1.quota.consume does: allowed, refused as a 200 reply, never admissible', async () => {
    const user = await meteredUser();
    const allowed = await service('quota/consume', { user_id: user.id, amounts: { tokens: 60 } });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get('content-type')).toBe('application/json');
    expect(allowed.body.allowed).toBe(true);
    expect(allowed.body.limits.find((limit: { name: string }) => limit.name === 'tokens')).toMatchObject({ limit: 100, remaining: 40 });
    // The quota routes' headers are HTTP's own: the service reply is the NATS one, as is.
    expect(allowed.headers.get('ratelimit')).toBeNull();

    const refused = await service('quota/consume', { user_id: user.id, amounts: { tokens: 60 } });
    expect(refused.status).toBe(200);
    expect(refused.body).toMatchObject({ allowed: false, denied: 'tokens' });
    expect(refused.body.retry_after_ms).toBeGreaterThan(0);
    const never = await service('quota/consume', { user_id: user.id, amounts: { tokens: 500 } });
    expect(never.status).toBe(200);
    expect(never.body).toMatchObject({ allowed: false, denied: 'tokens', exceeds_capacity: true });
    expect(never.body.retry_after_ms).toBeUndefined();
    expect(await tokensUsed(t.api, user.token)).toBe(60);
  });

  it('charges an idempotency_key once, and refuses it for another charge with 422', async () => {
    const user = await meteredUser();
    const body = { user_id: user.id, amounts: { tokens: 5 }, idempotency_key: 'retry-1' };
    expect((await service('quota/consume', body)).body.allowed).toBe(true);
    expect((await service('quota/consume', body)).body.allowed).toBe(true);
    expect(await tokensUsed(t.api, user.token)).toBe(5);
    const other = await service('quota/consume', { ...body, amounts: { tokens: 6 } });
    expect(other.status).toBe(422);
    expect(other.body.type).toBe('urn:tally:problem:idempotency-mismatch');
  });

  it('answers a batch item by item, in order: allowed, refused, malformed, unknown', async () => {
    const [rich, poor] = await Promise.all([meteredUser(), meteredUser()]);
    expect((await service('quota/consume', { user_id: poor.id, amounts: { tokens: 100 } })).body.allowed).toBe(true);
    const batch = await service('quota/consume', {
      items: [
        { user_id: rich.id, amounts: { tokens: 10 } },
        { user_id: poor.id, amounts: { tokens: 1 } },
        { user_id: rich.id, cost: -1 },
        { user_id: UNKNOWN_USER },
        { user_id: rich.id, amounts: { tokens: 10 } },
      ],
    });
    expect(batch.status).toBe(200);
    const [first, second, third, fourth, fifth] = batch.body.results;
    expect(batch.body.results).toHaveLength(5);
    expect(first.allowed).toBe(true);
    expect(second).toMatchObject({ allowed: false, denied: 'tokens' });
    expect(third.error).toMatchObject({ status: 400, type: 'urn:tally:problem:invalid-request' });
    expect(fourth.error).toMatchObject({ status: 404, type: 'urn:tally:problem:not-found' });
    expect(fifth.allowed).toBe(true);
    expect(await tokensUsed(t.api, rich.token)).toBe(20);
    expect(await tokensUsed(t.api, poor.token)).toBe(100);
  });

  it('consumes for the user an api_key names, and refuses a forged key with 401 (alone, or as its item)', async () => {
    const user = await meteredUser();
    const { key } = await createKey(t.api, user);
    const byKey = await service('quota/consume', { api_key: key, amounts: { tokens: 7 } });
    expect(byKey.status).toBe(200);
    expect(byKey.body.allowed).toBe(true);
    expect(await tokensUsed(t.api, user.token)).toBe(7);

    // The key's hash no longer matches once a character of its secret changes (its MAC, of
    // the user and key ids, still does): the user's actor refuses it.
    const forged = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    const alone = await service('quota/consume', { api_key: forged, amounts: { tokens: 7 } });
    expect(alone.status).toBe(401);
    expect(alone.headers.get('content-type')).toBe('application/problem+json');
    expect(alone.body.detail).toBe('invalid API key');
    const batch = await service('quota/consume', {
      items: [
        { api_key: forged, cost: 1 },
        { api_key: key, amounts: { tokens: 3 } },
      ],
    });
    expect(batch.status).toBe(200);
    expect(batch.body.results[0].error).toMatchObject({ status: 401, detail: 'invalid API key' });
    expect(batch.body.results[1].allowed).toBe(true);
    expect(await tokensUsed(t.api, user.token)).toBe(10);

    // A made-up user id with a MAC that does not verify: refused before any load.
    const loads = () => metric(t.api, 'tally_store_loads_total', { kind: 'user' });
    const before = await loads();
    const madeUp = `tk_u${'a'.repeat(20)}_k${'b'.repeat(12)}_${randomBytes(8).toString('base64url')}.${randomBytes(24).toString('base64url')}`;
    const refused = await service('quota/consume', { items: [{ api_key: madeUp, cost: 1 }] });
    expect(refused.body.results[0].error).toMatchObject({ status: 401, detail: 'invalid API key' });
    expect((await loads()) - before).toBe(0);
  });

  it('refuses a blocked user with 403, and an unknown one with 404', async () => {
    const user = await meteredUser();
    expect((await t.api('PATCH', `/v1/admin/users/${user.id}`, { token: t.adminToken, body: { blocked: true } })).status).toBe(200);
    const blocked = await service('quota/consume', { user_id: user.id });
    expect(blocked.status).toBe(403);
    expect(blocked.body.type).toBe('urn:tally:problem:forbidden');
    const unknown = await service('quota/consume', { user_id: UNKNOWN_USER });
    expect(unknown.status).toBe(404);
    expect(unknown.body.status).toBe(404);
  });
});

describe('POST /v1/service/quota/get', () => {
  it('answers the tier and limits of one user, or of each item', async () => {
    const user = await meteredUser();
    await service('quota/consume', { user_id: user.id, amounts: { tokens: 30 } });
    const one = await service('quota/get', { user_id: user.id });
    expect(one.status).toBe(200);
    expect(one.body.tier).toBe('metered');
    expect(one.body.limits.find((limit: { name: string }) => limit.name === 'tokens').remaining).toBe(70);
    const batch = await service('quota/get', { items: [{ user_id: user.id }, { user_id: UNKNOWN_USER }, { nobody: true }] });
    expect(batch.status).toBe(200);
    expect(batch.body.results[0]).toEqual(one.body);
    expect(batch.body.results[1].error.status).toBe(404);
    expect(batch.body.results[2].error.status).toBe(400);
  });
});

describe('reservations', () => {
  it('holds, then settles at what was used', async () => {
    const user = await meteredUser();
    const held = await service('quota/reserve', { user_id: user.id, amounts: { tokens: 50 }, ttl_ms: 60_000 });
    expect(held.status).toBe(200);
    expect(held.body).toMatchObject({ allowed: true, id: expect.any(String) });
    expect(Date.parse(held.body.expires_at)).toBeGreaterThan(Date.now());
    expect(await tokensUsed(t.api, user.token)).toBe(50);
    // A second hold does not fit next to the first: refused as a reply, nothing held.
    const refused = await service('quota/reserve', { user_id: user.id, amounts: { tokens: 60 } });
    expect(refused.status).toBe(200);
    expect(refused.body).toMatchObject({ allowed: false, denied: 'tokens' });
    expect(refused.body.id).toBeUndefined();

    const settled = await service('quota/settle', { user_id: user.id, id: held.body.id, amounts: { tokens: 20 } });
    expect(settled.status).toBe(200);
    expect(settled.body.limits.find((limit: { name: string }) => limit.name === 'tokens').remaining).toBe(80);
    expect(await tokensUsed(t.api, user.token)).toBe(20);
    const again = await service('quota/settle', { user_id: user.id, id: held.body.id, amounts: { tokens: 20 } });
    expect(again.status).toBe(404);
  });

  it('holds, then releases', async () => {
    const user = await meteredUser();
    const held = await service('quota/reserve', { user_id: user.id, amounts: { tokens: 40 } });
    expect(held.body.allowed).toBe(true);
    const released = await service('quota/release', { user_id: user.id, id: held.body.id });
    expect(released.status).toBe(200);
    expect(released.body).toEqual({ released: true });
    expect(await tokensUsed(t.api, user.token)).toBe(0);
    expect((await service('quota/release', { user_id: user.id, id: held.body.id })).status).toBe(404);
  });

  it('refuses a hold of nothing and a settlement of nothing with 400', async () => {
    const user = await meteredUser();
    expect((await service('quota/reserve', { user_id: user.id })).status).toBe(400);
    const held = await service('quota/reserve', { user_id: user.id, cost: 1 });
    expect((await service('quota/settle', { user_id: user.id, id: held.body.id })).status).toBe(400);
  });
});

describe('POST /v1/service/sessions/verify', () => {
  it('answers a live session’s user, session and tier', async () => {
    const user = await meteredUser();
    const verified = await service('sessions/verify', { token: user.token });
    expect(verified.status).toBe(200);
    expect(verified.body).toMatchObject({ user_id: user.id, session_id: user.sessionId, tier: 'metered' });
    expect(Date.parse(verified.body.expires_at)).toBeGreaterThan(Date.now());
  });

  it('refuses a forged token, and one whose session was revoked, with 401', async () => {
    const user = await meteredUser();
    const [header, payload] = user.token.split('.');
    const forged = await service('sessions/verify', { token: `${header}.${payload}.${'A'.repeat(43)}` });
    expect(forged.status).toBe(401);
    expect(forged.headers.get('www-authenticate')).toBe('Bearer realm="tally"');
    expect(forged.body.type).toBe('urn:tally:problem:unauthenticated');
    expect((await service('sessions/verify', { token: 'not-a-token' })).status).toBe(401);
    expect((await t.api('DELETE', `/v1/sessions/${user.sessionId}`, { token: user.token })).status).toBe(204);
    expect((await service('sessions/verify', { token: user.token })).status).toBe(401);
  });
});

describe('POST /v1/service/usage', () => {
  it('answers the admin’s usage query, taken in a body', async () => {
    const user = await meteredUser();
    await service('quota/consume', { user_id: user.id, amounts: { tokens: 9 } });
    const start = new Date(Date.now() - 3_600_000).toISOString();
    const query = { start, bucket: '1h', group_by: ['user'], user_id: user.id };
    let answer: Awaited<ReturnType<typeof service>> | undefined;
    // Usage is read from Postgres: it is there once the write-behind has flushed.
    await waitFor(async () => {
      answer = await service('usage', query);
      return answer.status === 200 && answer.body.data.length > 0;
    });
    const tokens = answer!.body.data.flatMap((bucket: { results: { resource: string }[] }) => bucket.results).find((r: any) => r.resource === 'tokens');
    expect(tokens).toMatchObject({ user_id: user.id, amount: 9, requests: 1, denied: 0 });
    expect(answer!.body.next_page).toBeNull();
    // The same page as the admin route's, whose query string says the same.
    const admin = await t.api('GET', `/v1/admin/usage?start=${encodeURIComponent(start)}&bucket=1h&group_by=user&user_id=${user.id}`, { token: t.adminToken });
    expect(admin.body).toEqual(answer!.body);
    expect((await service('usage', { ...query, limit: '10', extra: 1 })).status).toBe(400);
    expect((await service('usage', [])).status).toBe(400);
  });
});

describe('POST /v1/limiter/check', () => {
  it('is tally.v1.limiter.check over HTTP: the same body and reply, a refusal as a 200 reply', async () => {
    const check = () => t.api('POST', '/v1/limiter/check', { token: t.serviceToken, body: { key: 'gateway:tenant-1', limit: 2, window_ms: 60_000 } });
    expect((await check()).body).toMatchObject({ allowed: true, remaining: 1 });
    expect((await check()).body).toMatchObject({ allowed: true, remaining: 0 });
    const refused = await check();
    expect(refused.status).toBe(200);
    expect(Object.keys(refused.body).sort()).toEqual(['allowed', 'remaining', 'reset_at']);
    expect(refused.body.allowed).toBe(false);
    expect(Date.parse(refused.body.reset_at)).toBeGreaterThan(Date.now());
  });
});

describe('a request that fails as a whole', () => {
  it('needs the service token: none, or another, is 401', async () => {
    const user = await meteredUser();
    for (const path of ['quota/consume', 'quota/get', 'quota/reserve', 'quota/settle', 'quota/release', 'sessions/verify', 'usage']) {
      const none = await t.api('POST', `/v1/service/${path}`, { body: { user_id: user.id } });
      expect(none.status, path).toBe(401);
      expect(none.headers.get('www-authenticate'), path).toBe('Bearer realm="tally"');
      for (const token of [user.token, t.adminToken, `${t.serviceToken}x`]) {
        expect((await t.api('POST', `/v1/service/${path}`, { token, body: { user_id: user.id } })).status, path).toBe(401);
      }
    }
    expect(await tokensUsed(t.api, user.token)).toBe(0);
  });

  it('answers malformed JSON, a body of the wrong shape and too many items with a 400 problem', async () => {
    const malformed = await t.api('POST', '/v1/service/quota/consume', { token: t.serviceToken, raw: '{"user_id":' });
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('content-type')).toBe('application/problem+json');
    expect(malformed.body.type).toBe('urn:tally:problem:malformed-json');
    const wrong = await service('quota/consume', { user_id: 'not-an-id' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.type).toBe('urn:tally:problem:invalid-request');
    // An empty body is `{}`, as over NATS: a consume that names no user.
    expect((await t.api('POST', '/v1/service/quota/consume', { token: t.serviceToken })).status).toBe(400);
    const user = await meteredUser();
    // 1001 items: the envelope is refused, and no item is decided.
    const tooMany = await service('quota/consume', { items: Array.from({ length: 1001 }, () => ({ user_id: user.id })) });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.type).toBe('urn:tally:problem:invalid-request');
    expect((await service('quota/get', { items: [] })).status).toBe(400);
    const quota = await service('quota/get', { user_id: user.id });
    expect(quota.body.limits.find((limit: { name: string }) => limit.name === 'requests').remaining).toBe(600);
  });

  it('refuses a body over 64 KiB with 413: a large batch is sent in parts', async () => {
    const user = await meteredUser();
    const items = Array.from({ length: 1000 }, (_, i) => ({ user_id: user.id, idempotency_key: `${'k'.repeat(40)}-${i}` }));
    const tooLarge = await service('quota/consume', { items });
    expect(tooLarge.status).toBe(413);
    const [first, second] = await Promise.all([
      service('quota/consume', { items: items.slice(0, 500) }),
      service('quota/consume', { items: items.slice(500) }),
    ]);
    expect([first.status, second.status]).toEqual([200, 200]);
    const results = [...first.body.results, ...second.body.results];
    expect(results).toHaveLength(1000);
    expect(results.every((result: { allowed?: boolean }) => typeof result.allowed === 'boolean')).toBe(true);
  });
});

describe('a node without TALLY_SERVICE_TOKEN', () => {
  let bare: Awaited<ReturnType<typeof startTestNode>>;
  beforeAll(async () => {
    bare = await startTestNode({ env: { TALLY_SERVICE_TOKEN: '' } });
  });
  afterAll(async () => {
    await bare?.stop();
    await bare?.dropDatabase();
  });

  it('answers 403 on every service route, as on /v1/limiter/check', async () => {
    for (const path of ['/v1/service/quota/consume', '/v1/service/quota/get', '/v1/service/sessions/verify', '/v1/service/usage', '/v1/limiter/check']) {
      const res = await bare.api('POST', path, { token: 'anything-at-all-here', body: { key: 'k', limit: 1, window_ms: 1000 } });
      expect(res.status, path).toBe(403);
      expect(res.body.detail, path).toBe('this route is disabled: TALLY_SERVICE_TOKEN is not set');
    }
  });
});

describe('the OpenAPI document', () => {
  it('documents each service route with the NATS body and reply, and the body limit', async () => {
    const document = (await t.api('GET', '/openapi.json')).body;
    const consume = document.paths['/v1/service/quota/consume'].post;
    expect(consume.security).toEqual([{ serviceToken: [] }]);
    const variants = consume.requestBody.content['application/json'].schema.anyOf;
    expect(variants.map((variant: any) => Object.keys(variant.properties).sort())).toEqual([
      ['amounts', 'cost', 'idempotency_key', 'resource', 'user_id'],
      ['amounts', 'api_key', 'cost', 'idempotency_key', 'resource'],
      ['items'],
    ]);
    expect(variants[2].properties.items.maxItems).toBe(1000);
    expect(variants[2].properties.items.description).toMatch(/64 KiB/);
    expect(consume.responses['413'].description).toMatch(/in parts/);
    for (const path of ['quota/get', 'quota/reserve', 'quota/settle', 'quota/release', 'sessions/verify', 'usage']) {
      const operation = document.paths[`/v1/service/${path}`].post;
      expect(operation.responses['200'].content['application/json'].schema, path).toBeDefined();
      expect(Object.keys(operation.responses), path).toEqual(expect.arrayContaining(['400', '401', '403', '413', '415', '503']));
    }
  });
});

describe('parity with the NATS API, on a node in cluster mode', () => {
  let nats: NatsServer;
  let clustered: Awaited<ReturnType<typeof startTestNode>>;
  let nc: NatsConnection;
  beforeAll(async () => {
    nats = await startNatsServer();
    const secret = () => randomBytes(24).toString('hex');
    clustered = await startTestNode({
      env: {
        NATS_URL: nats.url,
        TALLY_NODE_ID: 'solo',
        TALLY_JWT_SECRET: secret(),
        TALLY_KEY_SECRET: secret(),
        TALLY_LEASE_MS: '1000',
        TALLY_HEARTBEAT_MS: '200',
      },
    });
    await waitFor(async () => (await clustered.api('GET', '/health/ready')).status === 200, 20_000);
    const tier = await clustered.api('PUT', '/v1/admin/tiers/metered', { token: clustered.adminToken, body: { limits: METERED } });
    expect(tier.status).toBe(200);
    nc = await connect({ servers: nats.url });
  }, 60_000);
  afterAll(async () => {
    await nc?.close();
    await clustered?.stop();
    await clustered?.dropDatabase();
    await stopAllNatsServers();
  });

  /** A request over NATS: the status `Nats-Service-Error-Code` gives (200 without one) and the body. */
  async function overNats(operation: string, body: unknown): Promise<Answer> {
    const reply = await nc.request(`tally.v1.${operation}`, typeof body === 'string' ? body : JSON.stringify(body), { timeout: 5000 });
    const code = reply.headers?.get('Nats-Service-Error-Code');
    return { status: code === undefined || code === '' ? 200 : Number(code), body: JSON.parse(reply.string()) };
  }
  async function overHttp(path: string, body: unknown): Promise<Answer> {
    const answer = await clustered.api('POST', path, { token: clustered.serviceToken, ...(typeof body === 'string' ? { raw: body } : { body }) });
    return { status: answer.status, body: answer.body };
  }
  /** The same request both ways, NATS first. */
  const both = async (operation: string, path: string, body: unknown) => ({ nats: await overNats(operation, body), http: await overHttp(path, body) });
  const newUser = () => createUser(clustered.api, { tier: 'metered', adminToken: clustered.adminToken });

  it('answers the same replies and problems to the same requests', async () => {
    const user = await newUser();
    const verify = await both('sessions.verify', '/v1/service/sessions/verify', { token: user.token });
    expect(verify.nats.status).toBe(200);
    expect(verify.http).toEqual(verify.nats);
    const get = await both('quota.get', '/v1/service/quota/get', { items: [{ user_id: user.id }, { user_id: UNKNOWN_USER }, {}] });
    expect(timeless(get.http)).toEqual(timeless(get.nats));
    for (const [operation, path, body] of [
      ['quota.consume', '/v1/service/quota/consume', '{"user_id":'],
      ['quota.consume', '/v1/service/quota/consume', { user_id: 'not-an-id' }],
      ['quota.consume', '/v1/service/quota/consume', { items: [] }],
      ['quota.consume', '/v1/service/quota/consume', { api_key: 'tk_forged' }],
      ['quota.settle', '/v1/service/quota/settle', { user_id: user.id, id: 'r-none', actual: 1 }],
      ['sessions.verify', '/v1/service/sessions/verify', { token: 'not-a-token' }],
      ['usage.get', '/v1/service/usage', { start: 'yesterday' }],
    ] as const) {
      const answers = await both(operation, path, body);
      expect(answers.nats.status, `${operation} ${JSON.stringify(body)}`).toBeGreaterThanOrEqual(400);
      expect(answers.http, `${operation} ${JSON.stringify(body)}`).toEqual(answers.nats);
    }
  });

  it('decides consumes and reservations alike, sharing the user’s state', async () => {
    const [natsUser, httpUser] = await Promise.all([newUser(), newUser()]);
    const batch = (user: TestUser) => ({
      items: [
        { user_id: user.id, amounts: { tokens: 70 } },
        { user_id: user.id, amounts: { tokens: 70 } },
        { user_id: user.id, cost: 0 },
      ],
    });
    const [byNats, byHttp] = await Promise.all([overNats('quota.consume', batch(natsUser)), overHttp('/v1/service/quota/consume', batch(httpUser))]);
    expect(timeless(byHttp)).toEqual(timeless(byNats));
    expect(byHttp.body.results.map((result: { allowed?: boolean }) => result.allowed)).toEqual([true, false, undefined]);
    expect(byHttp.body.results[2].error.status).toBe(400);
    for (const user of [natsUser, httpUser]) expect(await tokensUsed(clustered.api, user.token)).toBe(70);

    const held = await both('quota.reserve', '/v1/service/quota/reserve', { user_id: natsUser.id, amounts: { tokens: 10 } });
    expect(held.nats.body.allowed).toBe(true);
    expect(held.http.body.allowed).toBe(true);
    // A hold made over one transport is settled or released over the other.
    const settled = await both('quota.settle', '/v1/service/quota/settle', { user_id: natsUser.id, id: held.http.body.id, amounts: { tokens: 5 } });
    expect(settled.nats.status).toBe(200);
    expect(settled.http.status).toBe(404);
    const release = { user_id: natsUser.id, id: held.nats.body.id };
    expect(await overHttp('/v1/service/quota/release', release)).toEqual({ status: 200, body: { released: true } });
    expect((await overNats('quota.release', release)).status).toBe(404);
    expect(await tokensUsed(clustered.api, natsUser.token)).toBe(75);
  });

  it('checks keyed limits alike: tally.v1.limiter.check and POST /v1/limiter/check share their keys', async () => {
    const body = { key: `parity-${randomBytes(4).toString('hex')}`, limit: 3, window_ms: 60_000 };
    const first = await both('limiter.check', '/v1/limiter/check', body);
    expect([first.nats.body.remaining, first.http.body.remaining]).toEqual([2, 1]);
    const second = await both('limiter.check', '/v1/limiter/check', body);
    expect(second.nats.body).toMatchObject({ allowed: true, remaining: 0 });
    expect(second.http.status).toBe(200);
    expect(second.http.body).toEqual({ ...second.nats.body, allowed: false });
  });
});

interface Answer {
  status: number;
  body: any;
}

/** An answer without the parts that move with the clock: when each limit is whole again, and how long to wait. */
function timeless(answer: Answer): unknown {
  return JSON.parse(JSON.stringify(answer), (name, value) => (name === 'reset_at' || name === 'retry_after_ms' ? typeof value : value));
}
