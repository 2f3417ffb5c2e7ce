/**
 * The access log (TALLY_ACCESS_LOG) of a real node process: one `request` line per request
 * with the route's template, the status, the duration, the request id and who called, and
 * never a credential; none at all with TALLY_ACCESS_LOG_SAMPLE=0.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { parseApiKey } from '../../src/shards/index.js';
import { apiClient } from '../support/http.js';
import { createTestDatabase } from '../support/postgres.js';
import { killAllNodes, type NodeProcess, spawnNode } from '../support/process.js';
import { createKey, createUser } from '../support/tally.js';
import { makeTempDir } from '../support/tmp.js';
import { sleep, waitFor } from '../support/wait.js';

const adminToken = `admin-${randomBytes(12).toString('hex')}`;
const drops: (() => Promise<void>)[] = [];
afterAll(async () => {
  await killAllNodes();
  for (const drop of drops) await drop();
});

async function start(env: Record<string, string>): Promise<NodeProcess> {
  const database = await createTestDatabase();
  drops.push(database.drop);
  return spawnNode({ DATABASE_URL: database.url, TALLY_DATA_DIR: await makeTempDir(), TALLY_ADMIN_TOKEN: adminToken, TALLY_LOG_FORMAT: 'json', ...env });
}

type Entry = Record<string, unknown>;
const requestLines = (node: NodeProcess): Entry[] =>
  node.logs.flatMap((line) => (line.startsWith('{') ? [JSON.parse(line) as Entry] : [])).filter((entry) => entry.msg === 'request');

describe('the access log', () => {
  it('writes one line per request, with the route template and who called, and never a credential', async () => {
    const node = await start({ TALLY_ACCESS_LOG: '1', TALLY_NODE_ID: 'access-node' });
    const api = apiClient(node.baseUrl);
    const user = await createUser(api);
    const key = await createKey(api, user, { name: 'logged' });
    const keyId = key.id;

    // Each request names itself; the answer's status is what its line must say.
    const sent: { id: string; method: string; route: string; status: number; userId?: string; keyId?: string }[] = [];
    const send = async (
      id: string,
      method: string,
      path: string,
      route: string,
      options: { token?: string; body?: unknown; unchecked?: boolean },
      who: 'session' | 'key' | 'none',
    ) => {
      const answer = await api(method, path, { ...options, headers: { 'x-request-id': id } });
      sent.push({
        id,
        method,
        route,
        status: answer.status,
        ...(who === 'none' ? {} : { userId: user.id }),
        ...(who === 'key' ? { keyId } : {}),
      });
      return answer.status;
    };
    expect(await send('consume-key', 'POST', '/v1/quota/consume', '/v1/quota/consume', { token: key.key, body: { cost: 1 } }, 'key')).toBe(200);
    expect(await send('consume-session', 'POST', '/v1/quota/consume', '/v1/quota/consume', { token: user.token, body: { cost: 1 } }, 'session')).toBe(200);
    // The query string is never logged, nor is what it carries.
    const query = `/v1/user/profile?api_key=${encodeURIComponent(key.key)}&password=${encodeURIComponent(user.password)}`;
    expect(await send('profile', 'GET', query, '/v1/user/profile', { token: user.token }, 'session')).toBe(200);
    // A path parameter: the template is logged, not the id.
    const sessionStatus = await send('session-id', 'DELETE', '/v1/sessions/no-such-session-4711', '/v1/sessions/{id}', { token: user.token }, 'session');
    expect(sessionStatus).toBeGreaterThanOrEqual(400);
    expect(await send('anonymous', 'GET', '/v1/user/profile', '/v1/user/profile', {}, 'none')).toBe(401);
    expect(await send('bad-key', 'GET', '/v1/quota', '/v1/quota', { token: `${key.key.slice(0, -4)}AAAA` }, 'none')).toBe(401);
    expect(await send('login', 'POST', '/v1/sessions', '/v1/sessions', { body: { email: user.email, password: user.password } }, 'none')).toBe(201);
    // A path no route serves is the client's text: not logged.
    expect(await send('unmatched', 'GET', `/v1/nowhere/${encodeURIComponent(key.key)}`, 'unmatched', { unchecked: true }, 'none')).toBe(404);
    // A body no actor can charge (a resource named twice) is refused before the actor checks
    // the key: the caller is logged only if the key's MAC holds.
    const twice = { resource: 'tokens', amounts: { tokens: 1 } };
    const mac = parseApiKey(key.key)!.mac!;
    const forged = key.key.replace(`_${mac}.`, `_${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}.`);
    expect(await send('charge-twice', 'POST', '/v1/quota/consume', '/v1/quota/consume', { token: key.key, body: twice }, 'key')).toBe(400);
    expect(await send('forged-twice', 'POST', '/v1/quota/consume', '/v1/quota/consume', { token: forged, body: twice }, 'none')).toBe(400);
    // A revoked key: its MAC holds, the owner refuses it, and no caller is logged.
    expect((await api('DELETE', `/v1/keys/${keyId}`, { token: user.token })).status).toBe(204);
    expect(await send('revoked-key', 'POST', '/v1/quota/consume', '/v1/quota/consume', { token: key.key, body: { cost: 1 } }, 'none')).toBe(401);

    await waitFor(async () => requestLines(node).some((entry) => entry.request_id === 'revoked-key'), 5000);
    const lines = requestLines(node);
    // One line per request the node received (the client's own, the OpenAPI document the test client checks answers against).
    expect(new Set(lines.map((entry) => entry.request_id)).size).toBe(lines.length);
    for (const expected of sent) {
      const mine = lines.filter((entry) => entry.request_id === expected.id);
      expect(mine, expected.id).toHaveLength(1);
      const line = mine[0]!;
      expect(line, expected.id).toMatchObject({
        level: 'info',
        msg: 'request',
        node: 'access-node',
        method: expected.method,
        route: expected.route,
        status: expected.status,
      });
      expect(line.user_id, expected.id).toBe(expected.userId);
      expect(line.key_id, expected.id).toBe(expected.keyId);
      expect(typeof line.time).toBe('string');
      expect(line.duration_ms).toBeTypeOf('number');
      expect(line.duration_ms as number).toBeGreaterThanOrEqual(0);
      expect(Math.round((line.duration_ms as number) * 100) / 100).toBe(line.duration_ms);
      // Nothing else: no header, no URL, no body.
      expect(Object.keys(line).sort()).toEqual(
        [
          'duration_ms',
          'level',
          'method',
          'msg',
          'node',
          'request_id',
          'route',
          'status',
          'time',
          ...('userId' in expected ? ['user_id'] : []),
          ...('keyId' in expected ? ['key_id'] : []),
        ].sort(),
      );
    }
    // Every line of the requests made with no id of the test's: the node made one up.
    expect(lines.length).toBeGreaterThan(sent.length);

    const output = node.logs.join('\n');
    for (const secret of [key.key, key.key.slice(3), user.token, user.password, adminToken, 'no-such-session-4711', 'api_key', 'Bearer'])
      expect(output.includes(secret), `the log holds ${secret}`).toBe(false);
  });

  it('logs no request with TALLY_ACCESS_LOG_SAMPLE=0', async () => {
    const node = await start({ TALLY_ACCESS_LOG: 'true', TALLY_ACCESS_LOG_SAMPLE: '0' });
    const api = apiClient(node.baseUrl);
    const user = await createUser(api);
    const key = await createKey(api, user);
    for (let i = 0; i < 20; i++) expect((await api('POST', '/v1/quota/consume', { token: key.key, body: { cost: 1 } })).status).toBe(200);
    expect((await api('GET', '/v1/nowhere', { unchecked: true })).status).toBe(404);
    await sleep(300);
    expect(node.logs.some((line) => line.includes('tally is serving'))).toBe(true);
    expect(requestLines(node)).toEqual([]);
  });

  it('logs no request by default', async () => {
    const node = await start({});
    const api = apiClient(node.baseUrl);
    expect((await api('GET', '/v1/user/profile')).status).toBe(401);
    await sleep(300);
    expect(requestLines(node)).toEqual([]);
  });
});
