/**
 * The OpenAPI document says what the server does. Every answer of every route test is held
 * to it by the test client (support/openapi.ts); this file checks that the checker catches a
 * departure, that each operation's security is what the server enforces, and the parts of the
 * document a client generator relies on.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { OpenApiConformance } from '../support/openapi.js';
import { createKey, createUser, type StartedNode, type TestUser, useTestNode } from '../support/tally.js';

const node = useTestNode();
let t: StartedNode;
let document: Record<string, any>;
let conformance: OpenApiConformance;
let user: TestUser;
let key: string;

beforeAll(async () => {
  t = node();
  document = (await t.api('GET', '/openapi.json')).body;
  conformance = new OpenApiConformance(document);
  user = await createUser(t.api);
  key = (await createKey(t.api, user)).key;
});

const json = (status: number, body: unknown, headers: Record<string, string> = {}, contentType = 'application/json') => ({
  status,
  headers: new Headers({ 'content-type': contentType, ...headers }),
  text: JSON.stringify(body),
});

/** A body each operation accepts from a caller it admits (made-up ids stand in the paths). */
const BODIES: Record<string, unknown> = {
  'patch /v1/user/profile': { name: 'Ada' },
  'patch /v1/user/preferences': { theme: 'dark' },
  'put /v1/user/preferences': { theme: 'dark' },
  'post /v1/quota/reservations': { cost: 1 },
  'post /v1/quota/reservations/{id}/settle': { actual: 1 },
  'put /v1/admin/tiers/{name}': { limits: [] },
  'patch /v1/admin/users/{id}': { blocked: false },
  'post /v1/limiter/check': { key: 'k', limit: 1, window_ms: 1000 },
};

const operations = () =>
  Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
  );

describe('the conformance check', () => {
  it('accepts a conforming answer', () => {
    const problem = { type: 'urn:tally:problem:not-found', title: 'Not Found', status: 404, detail: 'no such session' };
    expect(conformance.check({ method: 'DELETE', path: '/v1/sessions/s1', ...json(404, problem, {}, 'application/problem+json') })).toEqual([]);
  });

  it('catches a status, a body, a header and a credential the document does not describe', () => {
    const profile = { id: 'u1', email: 'a@example.com', name: null, tier: 'free', created_at: '2026-01-01T00:00:00.000Z', preferences: {} };
    expect(conformance.check({ method: 'GET', path: '/v1/user/profile', ...json(418, {}) })).toEqual([
      'GET /v1/user/profile → 418: the document lists no 418 for this operation',
    ]);
    const { email: _dropped, ...withoutEmail } = profile;
    expect(conformance.check({ method: 'GET', path: '/v1/user/profile', ...json(200, withoutEmail) })[0]).toMatch(
      /^GET \/v1\/user\/profile → 200: the body does not match the document's schema: \(body\) must have required property 'email'/,
    );
    expect(conformance.check({ method: 'GET', path: '/v1/user/profile', ...json(200, profile, { 'retry-after': '1' }) })).toEqual([
      'GET /v1/user/profile → 200: sent retry-after, which the document does not list for this answer',
    ]);
    expect(conformance.check({ method: 'GET', path: '/v1/user/profile', token: 'tk_made_up', ...json(200, profile) })).toEqual([
      "GET /v1/user/profile → 200: an API key succeeded, but the operation's security does not list apiKey",
    ]);
    expect(conformance.check({ method: 'GET', path: '/v1/nowhere', ...json(200, {}) })).toEqual([
      'GET /v1/nowhere → 200: no operation in the document, so 404 was expected',
    ]);
    expect(conformance.check({ method: 'GET', path: '/v1/user/profile', ...json(200, profile, {}, 'text/html') })[0]).toMatch(/content-type text\/html/);
  });
});

describe('security, as the server enforces it', () => {
  it('lets an API key call exactly the operations whose security lists apiKey', async () => {
    const userOperations = operations().filter(({ operation }) => (operation.security ?? []).some((requirement: object) => 'sessionToken' in requirement));
    expect(userOperations.length).toBeGreaterThanOrEqual(16);
    for (const { path, method, operation } of userOperations) {
      const listsKey = operation.security.some((requirement: object) => 'apiKey' in requirement);
      const body = BODIES[`${method} ${path}`];
      const answer = await t.api(method.toUpperCase(), path.replace('{id}', 'made-up-id'), { token: key, ...(body === undefined ? {} : { body }) });
      const what = `${method.toUpperCase()} ${path} with an API key → ${answer.status} ${answer.text.slice(0, 120)}`;
      if (listsKey) expect(answer.status, what).not.toBe(403);
      else {
        expect(answer.status, what).toBe(403);
        expect(answer.body.detail, what).toBe('API keys may only be used for quota operations; use a session token');
      }
    }
    // The quota operations are the ones keys are for.
    const keyed = userOperations.filter(({ operation }) => operation.security.some((requirement: object) => 'apiKey' in requirement)).map(({ path }) => path);
    expect(new Set(keyed)).toEqual(
      new Set([
        '/v1/quota/consume',
        '/v1/quota/reservations',
        '/v1/quota/reservations/{id}/settle',
        '/v1/quota/reservations/{id}',
        '/v1/quota',
        '/v1/quota/usage',
      ]),
    );
  });

  it('requires the admin and service tokens where it says so', async () => {
    for (const { path, method, operation } of operations()) {
      const schemes = (operation.security ?? []).flatMap((requirement: object) => Object.keys(requirement));
      if (!schemes.includes('adminToken') && !schemes.includes('serviceToken')) continue;
      const body = BODIES[`${method} ${path}`];
      const answer = await t.api(method.toUpperCase(), path.replace(/\{\w+\}/, 'x1'), { token: user.token, ...(body === undefined ? {} : { body }) });
      expect(answer.status, `${method} ${path} with a session token`).toBe(401);
    }
  });
});

describe('the document', () => {
  it('names its server and lists the problem answers each kind of operation can give', () => {
    expect(document.servers).toEqual([{ url: '/', description: expect.any(String) }]);
    for (const { path, method, operation } of operations()) {
      const what = `${method} ${path}`;
      const codes = Object.keys(operation.responses);
      if (operation.security !== undefined) {
        expect(codes, what).toEqual(expect.arrayContaining(['401', '403']));
        expect(operation.responses['401'].headers['WWW-Authenticate'], what).toBeDefined();
      }
      if (operation.requestBody !== undefined) expect(codes, what).toEqual(expect.arrayContaining(['400', '413', '415']));
      if (!path.startsWith('/health') && !['/metrics', '/openapi.json', '/console'].includes(path)) {
        expect(codes, what).toContain('503');
        expect(operation.responses['503'].headers['Retry-After'], what).toBeDefined();
      }
      for (const code of codes.filter((c) => c === 'default' || Number(c) >= 400)) {
        const content = operation.responses[code].content;
        const problem = content['application/problem+json']?.schema;
        if (problem === undefined)
          expect(Object.keys(content), `${what} ${code}`).toEqual(['application/json']); // the ready check's own body
        else if (problem.$ref === undefined) expect(problem.required, `${what} ${code}`).toEqual(expect.arrayContaining(['type', 'title', 'status', 'detail']));
        else expect(problem.$ref, `${what} ${code}`).toBe('#/components/schemas/Problem');
      }
    }
  });

  it('describes the rate-limit headers of quota answers and the health bodies as they are', () => {
    const consume = document.paths['/v1/quota/consume'].post;
    for (const code of ['200', '429']) {
      expect(Object.keys(consume.responses[code].headers), code).toEqual(
        expect.arrayContaining(['RateLimit-Policy', 'RateLimit', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']),
      );
    }
    expect(Object.keys(consume.responses['429'].headers)).toContain('Retry-After');
    // A refusal always carries them; a success may come from a tier without limits.
    expect(Object.values(consume.responses['429'].headers).every((header: any) => header.required === true)).toBe(true);
    expect(consume.responses['200'].headers.RateLimit.required).toBe(false);
    expect(consume.responses['429'].content['application/problem+json'].schema.required).toContain('limits');
    expect(consume.responses['422'].headers).toBeUndefined(); // waiting cannot help
    const ready = document.paths['/health/ready'].get.responses['503'];
    expect(Object.keys(ready.content)).toEqual(['application/json']);
    expect(ready.content['application/json'].schema.required).toEqual(['status', 'checks']);
  });
});
