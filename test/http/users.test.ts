import { beforeEach, describe, expect, it } from 'vitest';
import { createUser, type StartedNode, useTestNode } from '../support/tally.js';

const node = useTestNode();
let t: StartedNode;
beforeEach(() => {
  t = node();
});

describe('POST /v1/users', () => {
  it('registers a user on the free tier and never returns the password', async () => {
    const res = await t.api('POST', '/v1/users', { body: { email: 'Ada@Example.com', password: 'correct horse', name: 'Ada' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ email: 'Ada@Example.com', name: 'Ada', tier: 'free' });
    expect(res.body.id).toMatch(/^u[a-z2-7]{20}$/);
    expect(Date.parse(res.body.created_at)).not.toBeNaN();
    expect(res.text).not.toContain('correct horse');
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  it('answers 409 for an email that exists, whatever its case', async () => {
    await t.api('POST', '/v1/users', { body: { email: 'dup@example.com', password: 'password1' } });
    const res = await t.api('POST', '/v1/users', { body: { email: 'DUP@example.com', password: 'password2' } });
    expect(res.status).toBe(409);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.body).toMatchObject({ status: 409, type: 'urn:tally:problem:email-taken' });
  });

  it('refuses a tier without the admin token and accepts it with', async () => {
    const refused = await t.api('POST', '/v1/users', { body: { email: 'tiered@example.com', password: 'password1', tier: 'pro' } });
    expect(refused.status).toBe(403);
    const accepted = await t.api('POST', '/v1/users', { token: t.adminToken, body: { email: 'tiered@example.com', password: 'password1', tier: 'pro' } });
    expect(accepted.status).toBe(201);
    expect(accepted.body.tier).toBe('pro');
    const unknown = await t.api('POST', '/v1/users', { token: t.adminToken, body: { email: 'x@example.com', password: 'password1', tier: 'nope' } });
    expect(unknown.status).toBe(422);
  });

  it.each([
    ['no body', undefined],
    ['a short password', { email: 'a@example.com', password: 'short' }],
    ['a bad email', { email: 'not-an-email', password: 'password1' }],
    ['an unknown field', { email: 'b@example.com', password: 'password1', admin: true }],
    ['a wrong type', { email: 42, password: 'password1' }],
  ])('answers 400 problem+json for %s', async (_, body) => {
    const res = await t.api('POST', '/v1/users', body === undefined ? {} : { body });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.body.title).toBe('Bad Request');
  });

  it('echoes the client request id', async () => {
    const res = await t.api('GET', '/health/live', { headers: { 'x-request-id': 'abc-123' } });
    expect(res.headers.get('x-request-id')).toBe('abc-123');
  });
});

describe('profile and preferences', () => {
  it('reads and edits the profile', async () => {
    const user = await createUser(t.api);
    const profile = await t.api('GET', '/v1/user/profile', { token: user.token });
    expect(profile.status).toBe(200);
    expect(profile.body).toMatchObject({ id: user.id, email: user.email, name: 'Test User', tier: 'free', preferences: {} });
    const renamed = await t.api('PATCH', '/v1/user/profile', { token: user.token, body: { name: 'Renamed', email: `new-${user.email}` } });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ name: 'Renamed', email: `new-${user.email}` });
    const empty = await t.api('PATCH', '/v1/user/profile', { token: user.token, body: {} });
    expect(empty.status).toBe(400);
  });

  it('refuses an email another user has', async () => {
    const a = await createUser(t.api);
    const b = await createUser(t.api);
    const res = await t.api('PATCH', '/v1/user/profile', { token: b.token, body: { email: a.email.toUpperCase() } });
    expect(res.status).toBe(409);
    const profile = await t.api('GET', '/v1/user/profile', { token: b.token });
    expect(profile.body.email).toBe(b.email);
  });

  it('merges preferences per RFC 7396 and replaces them with PUT', async () => {
    const user = await createUser(t.api);
    const first = await t.api('PATCH', '/v1/user/preferences', { token: user.token, body: { theme: 'dark', editor: { tabs: 2, font: 'mono' } } });
    expect(first.body).toEqual({ theme: 'dark', editor: { tabs: 2, font: 'mono' } });
    const second = await t.api('PATCH', '/v1/user/preferences', { token: user.token, body: { editor: { font: null, wrap: true }, theme: null } });
    expect(second.status).toBe(200);
    expect(second.body).toEqual({ editor: { tabs: 2, wrap: true } });
    const put = await t.api('PUT', '/v1/user/preferences', { token: user.token, body: { lang: 'fr' } });
    expect(put.body).toEqual({ lang: 'fr' });
    const read = await t.api('GET', '/v1/user/preferences', { token: user.token });
    expect(read.body).toEqual({ lang: 'fr' });
    const notObject = await t.api('PUT', '/v1/user/preferences', { token: user.token, body: [1, 2] });
    expect(notObject.status).toBe(400);
  });

  it('refuses preferences over 16 KiB once merged, and keeps the old document', async () => {
    const user = await createUser(t.api);
    await t.api('PUT', '/v1/user/preferences', { token: user.token, body: { a: 'x'.repeat(10_000) } });
    const res = await t.api('PATCH', '/v1/user/preferences', { token: user.token, body: { b: 'y'.repeat(7_000) } });
    expect(res.status).toBe(413);
    const read = await t.api('GET', '/v1/user/preferences', { token: user.token });
    expect(Object.keys(read.body)).toEqual(['a']);
  });

  it('answers 401 with WWW-Authenticate without a token or with a forged one', async () => {
    for (const token of [undefined, 'not-a-jwt', 'tk_garbage']) {
      const res = await t.api('GET', '/v1/user/profile', token === undefined ? {} : { token });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
    }
  });

  it('refuses API keys on profile routes', async () => {
    const user = await createUser(t.api);
    const key = await t.api('POST', '/v1/keys', { token: user.token, body: {} });
    const res = await t.api('GET', '/v1/user/profile', { token: key.body.key });
    expect(res.status).toBe(403);
  });
});
