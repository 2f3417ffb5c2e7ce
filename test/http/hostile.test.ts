/**
 * The hostile requests that once broke a node, each answered as the contract says, on both
 * databases; afterwards the node is ready, its flushes succeed, and a restart shows every
 * unit of usage kept.
 *
 * - a lone surrogate in a login email (it used to make every later flush fail);
 * - lone surrogates in preference member names and values (they used to answer 500);
 * - 40 concurrent wrong-password logins for one email (all used to reach scrypt);
 * - well-shaped keys for a user that does not exist (404, where the contract says 401).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/credentials/index.js';
import { issueApiKey, newUserId } from '../../src/shards/index.js';
import { metric } from '../support/metrics.js';
import { type Backend, createKey, createUser, type StartedNode, startTestNode, type TestUser, tokensUsed } from '../support/tally.js';

const LONE_HIGH = '\\ud800';
const LONE_LOW = '\\udc00';

describe.each<Backend>(['postgres', 'pglite'])('hostile input on %s', (backend) => {
  let t: StartedNode;
  let user: TestUser;
  let key: string;
  let consumed = 0;

  const consume = async (cost: number) => {
    const res = await t.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1, amounts: { tokens: cost } } });
    expect(res.status).toBe(200);
    consumed += cost;
  };

  beforeAll(async () => {
    t = await startTestNode({ backend });
    user = await createUser(t.api, { tier: 'pro', adminToken: t.adminToken });
    key = (await createKey(t.api, user)).key;
    await consume(3);
  });
  afterAll(async () => {
    await t.stop();
    await t.dropDatabase();
  });

  it('refuses a lone surrogate in a login email with a 400 naming the field, and keeps persisting', async () => {
    const res = await t.api('POST', '/v1/sessions', { raw: `{"email":"${LONE_HIGH}@a.com","password":"x"}` });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.body.detail).toBe('/email is not well-formed Unicode (a lone surrogate at character 0)');
    await consume(4);
    await new Promise((resolve) => setTimeout(resolve, 400)); // a few flush intervals
    expect(await metric(t.api, 'tally_flush_total', { result: 'error' })).toBe(0);
    expect(await metric(t.api, 'tally_flush_total', { result: 'ok' })).toBeGreaterThan(0);
    expect((await t.api('GET', '/health/ready')).status).toBe(200);
  });

  it('refuses lone surrogates in preference names and values with 400, and keeps the document', async () => {
    const put = await t.api('PUT', '/v1/user/preferences', { token: user.token, body: { theme: 'dark' } });
    expect(put.status).toBe(200);
    const attempts: [method: string, raw: string, detail: string][] = [
      ['PATCH', `{"a${LONE_HIGH}":1}`, 'a member name in the body is not well-formed Unicode (a lone surrogate at character 1)'],
      ['PATCH', `{"theme":"${LONE_LOW}x"}`, '/theme is not well-formed Unicode (a lone surrogate at character 0)'],
      ['PUT', `{"nested":{"k":["ok","${LONE_LOW}${LONE_HIGH}"]}}`, '/nested/k/1 is not well-formed Unicode (a lone surrogate at character 0)'],
      ['PUT', `{"k${LONE_LOW}":true}`, 'a member name in the body is not well-formed Unicode (a lone surrogate at character 1)'],
      ['PATCH', '{"theme":"a\\u0000b"}', '/theme contains U+0000 at character 1'],
    ];
    for (const [method, raw, detail] of attempts) {
      const res = await t.api(method, '/v1/user/preferences', { token: user.token, raw });
      expect(res.status, raw).toBe(400);
      expect(res.body.detail, raw).toBe(detail);
    }
    expect((await t.api('GET', '/v1/user/preferences', { token: user.token })).body).toEqual({ theme: 'dark' });
    // Non-characters are well-formed text, stored as sent.
    const odd = await t.api('PATCH', '/v1/user/preferences', { token: user.token, raw: '{"odd":"\\ufffe\\uffff\\ufdd0"}' });
    expect(odd.status).toBe(200);
    expect(odd.body.odd).toBe('\uFFFE\uFFFF\uFDD0');
  });

  it('counts 40 concurrent wrong-password logins before checking them: 10 answer 401, the rest 429', async () => {
    const victim = await createUser(t.api);
    const answers = await Promise.all(
      Array.from({ length: 40 }, () => t.api('POST', '/v1/sessions', { body: { email: victim.email, password: 'not the password' } })),
    );
    const statuses = answers.map((res) => res.status);
    expect(statuses.filter((status) => status === 401)).toHaveLength(10);
    expect(statuses.filter((status) => status === 429)).toHaveLength(30);
    for (const res of answers.filter((r) => r.status === 429)) expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    // The account stays locked for the window, even with the right password.
    expect((await t.api('POST', '/v1/sessions', { body: { email: victim.email, password: victim.password } })).status).toBe(429);
  });

  it('releases the attempt of a right password: logins that succeed never lock an account out', async () => {
    const regular = await createUser(t.api);
    for (let i = 0; i < 12; i++) {
      expect((await t.api('POST', '/v1/sessions', { body: { email: regular.email, password: regular.password } })).status).toBe(201);
    }
  });

  it('answers a key for a missing user, a deleted key and a wrong secret with the same 401', async () => {
    const other = await createUser(t.api);
    const deleted = await createKey(t.api, other);
    expect((await t.api('DELETE', `/v1/keys/${deleted.id}`, { token: other.token })).status).toBe(204);
    // A real key's MAC moved to a made-up user id: refused at the edge.
    const forged = key.replace(/^tk_u[a-z2-7]{20}_/, 'tk_uaaaaaaaaaaaaaaaaaaaa_');
    // A key the node could have issued (its MAC verifies) for a user that does not exist.
    const macKey = deriveKeys((await readFile(join(t.dataDir, 'key-secret'), 'utf8')).trim()).apiKeyMac;
    const missingUser = issueApiKey(newUserId(), macKey).key;
    const wrongSecret = `${key.slice(0, -4)}${key.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    const answers = [];
    for (const token of [forged, missingUser, deleted.key, wrongSecret]) {
      const res = await t.api('POST', '/v1/quota/consume', { token, body: { cost: 1 } });
      expect(res.status, token).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tally"');
      answers.push({ type: res.body.type, title: res.body.title, detail: res.body.detail });
    }
    expect(new Set(answers.map((answer) => JSON.stringify(answer))).size).toBe(1);
    expect(answers[0]).toEqual({ type: 'urn:tally:problem:unauthenticated', title: 'Unauthorized', detail: 'invalid API key' });
  });

  it('is ready afterwards, and a restart shows every unit of usage kept', async () => {
    await consume(5);
    expect((await t.api('GET', '/health/ready')).status).toBe(200);
    expect(await metric(t.api, 'tally_flush_rows_quarantined_total')).toBe(0);
    await t.stop();
    t = {
      ...(await startTestNode({ backend, dataDir: t.dataDir, ...(t.databaseUrl === undefined ? {} : { databaseUrl: t.databaseUrl }) })),
      dropDatabase: t.dropDatabase,
    };
    expect(await tokensUsed(t.api, key)).toBe(consumed);
  });
});
