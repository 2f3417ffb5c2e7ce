import { beforeEach, describe, expect, it } from 'vitest';
import { createKey, createUser, type StartedNode, useTestNode } from '../support/tally.js';

const node = useTestNode();
let t: StartedNode;
beforeEach(() => {
  t = node();
});

describe('API keys', () => {
  it('creates a key shown once, lists it without the secret, and authenticates with it', async () => {
    const user = await createUser(t.api);
    const created = await t.api('POST', '/v1/keys', { token: user.token, body: { name: 'ci', scopes: ['quota'] } });
    expect(created.status).toBe(201);
    expect(created.body.key).toMatch(/^tk_/);
    expect(created.body.key.startsWith(created.body.prefix)).toBe(true);
    expect(created.body).toMatchObject({ name: 'ci', scopes: ['quota'], expires_at: null });
    const list = await t.api('GET', '/v1/keys', { token: user.token });
    expect(list.body.keys).toHaveLength(1);
    expect(list.text).not.toContain(created.body.key);
    const used = await t.api('GET', '/v1/quota', { token: created.body.key });
    expect(used.status).toBe(200);
  });

  it('refuses a deleted key from the next request on', async () => {
    const user = await createUser(t.api);
    const key = await createKey(t.api, user);
    expect((await t.api('POST', '/v1/quota/consume', { token: key.key })).status).toBe(200);
    expect((await t.api('DELETE', `/v1/keys/${key.id}`, { token: user.token })).status).toBe(204);
    const refused = await t.api('POST', '/v1/quota/consume', { token: key.key });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('refuses a key whose secret was altered, and another user’s key id', async () => {
    const a = await createUser(t.api);
    const b = await createUser(t.api);
    const key = await createKey(t.api, a);
    const last = key.key.at(-1) === 'A' ? 'B' : 'A';
    expect((await t.api('GET', '/v1/quota', { token: key.key.slice(0, -1) + last })).status).toBe(401);
    expect((await t.api('DELETE', `/v1/keys/${key.id}`, { token: b.token })).status).toBe(404);
    expect((await t.api('GET', '/v1/quota', { token: key.key })).status).toBe(200);
  });

  it('honours scopes and expiry', async () => {
    const user = await createUser(t.api);
    const readOnly = await createKey(t.api, user, { scopes: ['quota:read'] });
    expect((await t.api('GET', '/v1/quota', { token: readOnly.key })).status).toBe(200);
    expect((await t.api('POST', '/v1/quota/consume', { token: readOnly.key })).status).toBe(403);
    const past = await t.api('POST', '/v1/keys', { token: user.token, body: { expires_at: '2000-01-01T00:00:00Z' } });
    expect(past.status).toBe(400);
    const badScope = await t.api('POST', '/v1/keys', { token: user.token, body: { scopes: ['admin'] } });
    expect(badScope.status).toBe(400);
  });

  it('cannot manage keys with a key', async () => {
    const user = await createUser(t.api);
    const key = await createKey(t.api, user);
    expect((await t.api('POST', '/v1/keys', { token: key.key, body: {} })).status).toBe(403);
    expect((await t.api('GET', '/v1/keys', { token: key.key })).status).toBe(403);
  });
});
