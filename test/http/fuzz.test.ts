/**
 * Hostile input on every route: random JSON, wrong types, huge numbers, deep nesting,
 * invalid UTF-8, oversized bodies, odd headers. Whatever arrives, the node answers (no
 * crash, no 5xx) with a success or a 4xx problem+json, and keeps serving.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createUser, startTestNode, type TestNode, type TestUser } from '../support/tally.js';

let t: TestNode & { dropDatabase(): Promise<void> };
let user: TestUser;
let key: string;
let routes: { method: string; path: string }[];

beforeAll(async () => {
  t = await startTestNode({ backend: 'pglite' });
  user = await createUser(t.api);
  key = (await createKey(t.api, user)).key;
  const doc = await t.api('GET', '/openapi.json');
  routes = Object.entries(doc.body.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
    Object.keys(ops).map((method) => ({ method: method.toUpperCase(), path: path.replace(/\{\w+\}/g, 'x1') })),
  );
});
afterAll(async () => {
  await t.stop();
});

function assertSane(res: { status: number; headers: Headers; text: string }, what: string) {
  expect(res.status, what).toBeLessThan(500);
  if (res.status >= 400) {
    expect(res.headers.get('content-type'), what).toBe('application/problem+json');
    const body = JSON.parse(res.text);
    expect(body.status, what).toBe(res.status);
    expect(typeof body.title, what).toBe('string');
    expect(typeof body.detail, what).toBe('string');
    expect(res.text, what).not.toMatch(/at .*\.(ts|js):\d+/); // never a stack trace
  }
}

const hostileBodies: [string, string | Uint8Array][] = [
  ['invalid UTF-8', new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
  ['truncated JSON', '{"email": "a@'],
  ['huge number', '{"cost": 1e400, "actual": 123456789012345678901234567890, "limit": -1e308}'],
  ['deep nesting', '['.repeat(20_000) + ']'.repeat(20_000)],
  ['deep object', `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`],
  ['oversized', JSON.stringify({ pad: 'x'.repeat(70 * 1024) })],
  ['null', 'null'],
  ['string', '"hello"'],
  ['proto pollution', '{"__proto__": {"admin": true}, "constructor": {"prototype": {"x": 1}}}'],
  ['nul bytes', '{"email": "a\\u0000@b.c", "password": "\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000"}'],
];

describe('fuzzed requests', () => {
  it('answers hostile bodies on every route with 2xx or a 4xx problem', async () => {
    for (const route of routes) {
      for (const [name, raw] of hostileBodies) {
        for (const token of [undefined, user.token, key, t.adminToken, t.serviceToken]) {
          const res = await t.api(route.method, route.path, { raw, ...(token === undefined ? {} : { token }) });
          assertSane(res, `${route.method} ${route.path} with ${name}`);
        }
      }
    }
  });

  it('answers random JSON on every route with 2xx or a 4xx problem', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        fc.jsonValue({ maxDepth: 4 }),
        fc.constantFrom<'user' | 'key' | 'admin' | 'none'>('user', 'key', 'admin', 'none'),
        async (route, body, who) => {
          const token = who === 'user' ? user.token : who === 'key' ? key : who === 'admin' ? t.adminToken : undefined;
          const res = await t.api(route.method, route.path, { body, ...(token === undefined ? {} : { token }) });
          assertSane(res, `${route.method} ${route.path} ${JSON.stringify(body).slice(0, 200)}`);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('answers odd headers with 2xx or a 4xx problem', async () => {
    const headerSets: Record<string, string>[] = [
      { authorization: 'Bearer' },
      { authorization: 'Basic dXNlcjpwYXNz' },
      { authorization: `Bearer ${'a'.repeat(8000)}` },
      { authorization: `Bearer tk_${'u'.repeat(21)}_k${'a'.repeat(12)}_${'x'.repeat(43)}` },
      { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' },
      { 'idempotency-key': 'k'.repeat(1000) },
      { 'content-type': 'application/json; charset=latin1' },
      { 'x-request-id': '\u00e9\u00e9' },
      { 'x-forwarded-for': 'not-an-ip, , ,' },
    ];
    for (const route of routes) {
      for (const headers of headerSets) {
        const res = await t.api(route.method, route.path, { headers, body: { cost: 1 } });
        assertSane(res, `${route.method} ${route.path} with ${JSON.stringify(headers).slice(0, 80)}`);
      }
    }
  });

  it('still serves normally afterwards', async () => {
    // The fuzzing may have logged the user out everywhere: log in afresh.
    const login = await t.api('POST', '/v1/sessions', { body: { email: user.email, password: user.password } });
    expect(login.status).toBe(201);
    expect((await t.api('GET', '/v1/user/profile', { token: login.body.token })).status).toBe(200);
    expect((await t.api('GET', '/health/ready')).status).toBe(200);
  });
});
