/**
 * The internal NATS API against three node processes on a real nats-server: discovery with
 * `$SRV`, JSON and MessagePack, denials as replies and bad input, unknown users, bad tokens
 * and blocked users as service errors, batches decided item by item in order, and a strict
 * limit hit by many callers at once admitting exactly its limit.
 */

import { Svcm } from '@nats-io/services';
import { connect, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initHashing, shardOf } from '../../src/shards/index.js';
import { createTestCluster, strictLimits, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createUser, type TestUser, tokensUsed } from '../support/tally.js';

const LIMIT = 60;
const ids = ['n1', 'n2', 'n3'];
const packr = new Packr({ useRecords: false });
let cluster: TestCluster;
let nc: NatsConnection;

beforeAll(async () => {
  await initHashing();
  cluster = await createTestCluster({ leaseMs: 3000 });
  await cluster.addTier('strict', strictLimits(LIMIT, { periodMs: 3_600_000, tokens: 1_000 }));
  await cluster.startAll(ids);
  nc = await connect({ servers: cluster.nats.url });
}, 60_000);
afterAll(async () => {
  await nc?.close();
  await cluster?.stop();
});

const api = (i = 0) => apiClient(cluster.nodes.get(ids[i % ids.length]!)!.baseUrl);
const newUser = (tier: string) => createUser(api(), { adminToken: cluster.adminToken, tier });

interface Answer {
  body: any;
  errorCode: number | null;
}

async function call(subject: string, body: unknown, options: { msgpack?: boolean; connection?: NatsConnection } = {}): Promise<Answer> {
  const h = headers();
  if (options.msgpack === true) h.set('content-type', 'application/msgpack');
  const data = options.msgpack === true ? packr.pack(body) : JSON.stringify(body);
  const reply: Msg = await (options.connection ?? nc).request(subject, data, { timeout: 5000, headers: h });
  const code = reply.headers?.get('Nats-Service-Error-Code');
  const text = options.msgpack === true ? packr.unpack(reply.data) : reply.data.length === 0 ? null : JSON.parse(reply.string());
  return { body: text, errorCode: code === undefined || code === '' ? null : Number(code) };
}

describe('the NATS service', () => {
  it('is found by $SRV.PING and $SRV.INFO on every node, with the contract’s subjects', async () => {
    const client = new Svcm(nc).client();
    const pings = [];
    for await (const ping of await client.ping('tally')) pings.push(ping);
    expect(pings.map((ping) => ping.metadata?.node).sort()).toEqual(ids);
    const infos = [];
    for await (const info of await client.info('tally')) infos.push(info);
    expect(infos).toHaveLength(3);
    const direct = ['limiter.check', 'quota.consume', 'quota.get', 'quota.release', 'quota.reserve', 'quota.settle'];
    for (const info of infos) {
      expect(info.endpoints.map((endpoint) => endpoint.subject).sort()).toEqual(
        [
          'tally.v1.cluster.map',
          'tally.v1.limiter.check',
          'tally.v1.quota.consume',
          'tally.v1.quota.get',
          'tally.v1.quota.release',
          'tally.v1.quota.reserve',
          'tally.v1.quota.settle',
          'tally.v1.sessions.verify',
          'tally.v1.usage.get',
          // A node's own subjects, for a client that routes to owners.
          ...direct.map((operation) => `tally.v1.node.${info.metadata?.node}.${operation}`),
        ].sort(),
      );
    }
    expect(infos.every((info) => info.endpoints.every((endpoint) => endpoint.queue_group === 'tally'))).toBe(true);
  });

  it('consumes in JSON and in MessagePack, and the usage is the one HTTP sees', async () => {
    const user = await newUser('pro');
    const json = await call('tally.v1.quota.consume', { user_id: user.id, cost: 1, amounts: { tokens: 7 } });
    expect(json.errorCode).toBeNull();
    expect(json.body.allowed).toBe(true);
    expect(json.body.limits.map((limit: { name: string }) => limit.name)).toContain('tokens');
    const packed = await call('tally.v1.quota.consume', { user_id: user.id, amounts: { tokens: 3 } }, { msgpack: true });
    expect(packed.errorCode).toBeNull();
    expect(packed.body.allowed).toBe(true);
    expect(await tokensUsed(api(1), user.token)).toBe(10);
    const quota = await call('tally.v1.quota.get', { user_id: user.id });
    expect(quota.body.tier).toBe('pro');
  });

  it('answers a denial as a reply, and bad input, unknown users and blocked users as service errors', async () => {
    const user = await newUser('strict');
    const denied = await call('tally.v1.quota.consume', { user_id: user.id, amounts: { tokens: 600 } });
    expect(denied.body.allowed).toBe(true);
    const refused = await call('tally.v1.quota.consume', { user_id: user.id, amounts: { tokens: 600 } });
    expect(refused.errorCode).toBeNull();
    expect(refused.body).toMatchObject({ allowed: false, denied: 'tokens' });
    expect(refused.body.retry_after_ms).toBeGreaterThan(0);
    const never = await call('tally.v1.quota.consume', { user_id: user.id, amounts: { tokens: 5000 } });
    expect(never.body).toMatchObject({ allowed: false, denied: 'tokens', exceeds_capacity: true });

    const bad = await call('tally.v1.quota.consume', { user_id: user.id, cost: -1 });
    expect(bad.errorCode).toBe(400);
    expect(bad.body).toMatchObject({ status: 400, type: 'urn:tally:problem:invalid-request' });
    const notJson = await nc.request('tally.v1.quota.consume', '{"user_id":', { timeout: 5000 });
    expect(notJson.headers?.get('Nats-Service-Error-Code')).toBe('400');
    expect((await call('tally.v1.quota.consume', { user_id: 'not-an-id' })).errorCode).toBe(400);
    const unknown = await call('tally.v1.quota.consume', { user_id: 'uaaaaaaaaaaaaaaaaaaaa' });
    expect(unknown.errorCode).toBe(404);
    expect(unknown.body.status).toBe(404);

    const patched = await api(2)('PATCH', `/v1/admin/users/${user.id}`, { token: cluster.adminToken, body: { blocked: true } });
    expect(patched.status).toBe(200);
    for (const msgpack of [false, true]) expect((await call('tally.v1.quota.consume', { user_id: user.id }, { msgpack })).errorCode).toBe(403);
    // Nothing was charged by any refusal: the budget still shows the one consume of 600.
    await api(2)('PATCH', `/v1/admin/users/${user.id}`, { token: cluster.adminToken, body: { blocked: false } });
    expect((await call('tally.v1.quota.get', { user_id: user.id })).body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(400);
  });

  it('refuses the text HTTP refuses (U+0000, lone surrogates) in every string field, and charges nothing', async () => {
    const user = await newUser('strict');
    const held = await call('tally.v1.quota.reserve', { user_id: user.id, amounts: { tokens: 100 } });
    expect(held.body.allowed).toBe(true);
    const valid: Record<string, Record<string, unknown>> = {
      'quota.consume': { user_id: user.id, resource: 'requests', amounts: { tokens: 1 }, idempotency_key: 'k-1' },
      'quota.get': { user_id: user.id },
      'quota.reserve': { user_id: user.id, resource: 'requests', amounts: { tokens: 1 } },
      'quota.settle': { user_id: user.id, id: held.body.id, amounts: { tokens: 1 } },
      'quota.release': { user_id: user.id, id: held.body.id },
      'sessions.verify': { token: user.token },
      'limiter.check': { key: `text-${user.id}`, limit: 5, window_ms: 60_000 },
    };
    // Each string value, and each member name of `amounts`, made ill-formed in turn.
    const spoiled = (body: Record<string, unknown>, bad: string): Record<string, unknown>[] => {
      const bodies: Record<string, unknown>[] = [];
      for (const [name, value] of Object.entries(body)) {
        if (typeof value === 'string') bodies.push({ ...body, [name]: `${value.slice(0, 2)}${bad}${value.slice(2)}` });
        else if (name === 'amounts') bodies.push({ ...body, amounts: { [`tok${bad}ens`]: 1 } });
      }
      return bodies;
    };
    let refusals = 0;
    for (const [operation, body] of Object.entries(valid)) {
      // MessagePack cannot carry a lone surrogate (msgpackr decodes one as U+FFFD); JSON can, as `\ud800`.
      for (const [bad, msgpack] of [
        ['\u0000', false],
        ['\u0000', true],
        ['\ud800', false],
        ['\udc00', false],
      ] as const) {
        for (const sent of spoiled(body, bad)) {
          const answer = await call(`tally.v1.${operation}`, sent, { msgpack });
          expect({ operation, sent, code: answer.errorCode }).toEqual({ operation, sent, code: 400 });
          expect(answer.body.detail).toMatch(/U\+0000|lone surrogate/);
          refusals++;
        }
      }
    }
    expect(refusals).toBe(4 * 15);
    // In a batch, only the ill-formed item is refused.
    const batch = await call('tally.v1.quota.consume', { items: [{ user_id: user.id, idempotency_key: 'a\u0000b' }, { user_id: user.id }] }, { msgpack: true });
    expect(batch.body.results[0].error.status).toBe(400);
    expect(batch.body.results[1].allowed).toBe(true);
    // Nothing was charged but the one good consume of the batch and the hold; the hold is still open.
    const quota = await call('tally.v1.quota.get', { user_id: user.id });
    const remaining = Object.fromEntries(quota.body.limits.map((limit: { name: string; remaining: number }) => [limit.name, limit.remaining]));
    expect(remaining).toEqual({ requests: LIMIT - 2, tokens: 900 });
    expect((await call('tally.v1.quota.release', { user_id: user.id, id: held.body.id })).body).toEqual({ released: true });
  });

  it('decides a batch item by item, in order, across every owner', async () => {
    const users: TestUser[] = await Promise.all(Array.from({ length: 12 }, () => newUser('strict')));
    const items: unknown[] = [];
    for (let round = 0; round < 20; round++) for (const user of users) items.push({ user_id: user.id, amounts: { tokens: 10 } });
    items.splice(5, 0, { user_id: users[0]!.id, cost: 0 }, { user_id: 'uaaaaaaaaaaaaaaaaaaaa' });
    const answer = await call('tally.v1.quota.consume', { items }, { msgpack: true });
    expect(answer.errorCode).toBeNull();
    const results = answer.body.results as any[];
    expect(results).toHaveLength(items.length);
    expect(results[5].error.status).toBe(400);
    expect(results[6].error.status).toBe(404);
    expect(results.filter((result) => result.allowed === true)).toHaveLength(240);
    for (const user of users.slice(0, 3)) expect(await tokensUsed(api(), user.token)).toBe(200);
    // `get` batches too; a batch over 1000 items is refused whole.
    const got = await call('tally.v1.quota.get', { items: users.map((user) => ({ user_id: user.id })) });
    expect(got.body.results.map((result: { tier: string }) => result.tier)).toEqual(users.map(() => 'strict'));
    expect((await call('tally.v1.quota.consume', { items: Array.from({ length: 1001 }, () => ({ user_id: users[0]!.id })) })).errorCode).toBe(400);
    expect((await call('tally.v1.quota.consume', { items: [] })).errorCode).toBe(400);
  });

  it('admits exactly a strict limit hit by many callers at once, in single requests and batches', async () => {
    const callers = await Promise.all(Array.from({ length: 6 }, () => connect({ servers: cluster.nats.url })));
    try {
      const user = await newUser('strict');
      const singles = await Promise.all(
        Array.from({ length: LIMIT * 2 }, (_, i) => call('tally.v1.quota.consume', { user_id: user.id }, { connection: callers[i % callers.length]! })),
      );
      const batched = await Promise.all(
        callers.map((connection) => call('tally.v1.quota.consume', { items: Array.from({ length: 10 }, () => ({ user_id: user.id })) }, { connection })),
      );
      const decisions = [...singles.map((answer) => answer.body), ...batched.flatMap((answer) => answer.body.results)];
      expect(decisions).toHaveLength(LIMIT * 3);
      expect(decisions.filter((decision) => decision.allowed === true)).toHaveLength(LIMIT);
      expect(decisions.filter((decision) => decision.allowed === false && decision.denied === 'requests')).toHaveLength(LIMIT * 2);
    } finally {
      await Promise.all(callers.map((connection) => connection.close()));
    }
  });

  it('holds, settles and releases reservations', async () => {
    const user = await newUser('strict');
    const held = await call('tally.v1.quota.reserve', { user_id: user.id, amounts: { tokens: 500 }, ttl_ms: 60_000 });
    expect(held.body).toMatchObject({ allowed: true });
    expect(held.body.id).toMatch(/^r/);
    const tooMuch = await call('tally.v1.quota.reserve', { user_id: user.id, amounts: { tokens: 600 } });
    expect(tooMuch.body).toMatchObject({ allowed: false, denied: 'tokens' });
    const settled = await call('tally.v1.quota.settle', { user_id: user.id, id: held.body.id, amounts: { tokens: 120 } });
    expect(settled.errorCode).toBeNull();
    expect(settled.body.limits.find((l: { name: string }) => l.name === 'tokens').remaining).toBe(880);
    expect((await call('tally.v1.quota.release', { user_id: user.id, id: held.body.id })).errorCode).toBe(404);
    const second = await call('tally.v1.quota.reserve', { user_id: user.id, cost: 1 });
    expect((await call('tally.v1.quota.release', { user_id: user.id, id: second.body.id })).body).toEqual({ released: true });
    expect((await call('tally.v1.quota.reserve', { user_id: user.id })).errorCode).toBe(400);
  });

  it('verifies a live session and refuses a revoked or forged one', async () => {
    const user = await newUser('pro');
    const verified = await call('tally.v1.sessions.verify', { token: user.token });
    expect(verified.errorCode).toBeNull();
    expect(verified.body).toMatchObject({ user_id: user.id, session_id: user.sessionId, tier: 'pro' });
    expect(Date.parse(verified.body.expires_at)).toBeGreaterThan(Date.now());
    expect((await call('tally.v1.sessions.verify', { token: `${user.token}x` })).errorCode).toBe(401);
    expect((await api(1)('POST', '/v1/sessions/logout-all', { token: user.token })).status).toBe(200);
    const revoked = await call('tally.v1.sessions.verify', { token: user.token });
    expect(revoked.errorCode).toBe(401);
    expect(revoked.body.status).toBe(401);
  });

  it('checks keyed limits, shared with the HTTP limiter', async () => {
    const key = `nats-limiter-${Date.now()}`;
    const check = () => call('tally.v1.limiter.check', { key, limit: 2, window_ms: 60_000 });
    expect((await check()).body).toMatchObject({ allowed: true, remaining: 1 });
    expect((await check()).body).toMatchObject({ allowed: true, remaining: 0 });
    expect((await check()).body.allowed).toBe(false);
    expect((await call('tally.v1.limiter.check', { key, limit: 0, window_ms: 60_000 })).errorCode).toBe(400);
  });

  it('gives the shard map, and on a node’s own subjects decides only what that node owns: `moved` for the rest, never forwarded', async () => {
    const map = (await call('tally.v1.cluster.map', {})).body;
    expect(map).toMatchObject({ shard_count: 1024, hash: 'xxh64', limiter_prefix: 'limiter:service:', direct_prefix: 'tally.v1.node.' });
    expect([...map.nodes].sort()).toEqual(ids);
    expect(map.owners).toHaveLength(1024);
    const users: TestUser[] = await Promise.all(Array.from({ length: 6 }, () => newUser('pro')));
    const ownerOf = (user: TestUser) => map.nodes[map.owners[shardOf(user.id)]] as string;
    const node = ownerOf(users[0]!);
    const items = users.map((user) => ({ user_id: user.id, amounts: { tokens: 3 } }));
    const answer = await call(`tally.v1.node.${node}.quota.consume`, { items }, { msgpack: true });
    expect(answer.errorCode).toBeNull();
    for (const [i, user] of users.entries()) {
      if (ownerOf(user) === node) expect(answer.body.results[i]).toMatchObject({ allowed: true });
      else expect(answer.body.results[i]).toEqual({ moved: true });
      expect(await tokensUsed(api(), user.token)).toBe(ownerOf(user) === node ? 3 : 0);
    }
    const stranger = users.find((user) => ownerOf(user) !== node) ?? (await newUserOwnedElsewhere(node, ownerOf));
    expect((await call(`tally.v1.node.${node}.quota.get`, { user_id: stranger.id })).body).toEqual({ moved: true });
    // A bad item is still a bad item there.
    expect((await call(`tally.v1.node.${node}.quota.consume`, { user_id: 'nobody' })).errorCode).toBe(400);
  });
});

describe('the NATS service reading bytes', () => {
  it('refuses a JSON body that is not valid UTF-8, as HTTP does, rather than replacing the bytes', async () => {
    const user = await newUser('pro');
    const body = Buffer.concat([Buffer.from(`{"user_id":"${user.id}","resource":"to`), Buffer.from([0xff]), Buffer.from('kens","cost":1}')]);
    const reply = await nc.request('tally.v1.quota.consume', body, { timeout: 5000 });
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('400');
    expect(JSON.parse(reply.string())).toMatchObject({ status: 400, detail: 'the request body is not valid UTF-8' });
    expect(await tokensUsed(api(), user.token)).toBe(0);
  });
});

/** A user whose shard another node than `node` owns (the map spreads users over three nodes, so a few tries find one). */
async function newUserOwnedElsewhere(node: string, ownerOf: (user: TestUser) => string): Promise<TestUser> {
  for (;;) {
    const user = await newUser('pro');
    if (ownerOf(user) !== node) return user;
  }
}
