/**
 * No value makes a row unwritable, and no hand-off or shutdown reports success while an actor
 * of its shard is unwritten. Two node processes, a real nats-server and Postgres.
 *
 * - Text Postgres refuses in a row (U+0000, lone surrogates), sent over HTTP and over the
 *   NATS API (JSON and MessagePack) in every string a consume, reserve or limiter check
 *   stores, is answered 400; well-formed oddities (non-characters, astral characters, the
 *   longest names and keys) are admitted; and the user's row is then written, holding
 *   exactly the admitted usage, with nothing quarantined on either node.
 * - A row the database refuses all the same (a trigger refusing one user's row): the shard
 *   is not handed over while the row is refused (a hand-off used to release it and drop the
 *   actor, and the user's budget went back to its last written row); once the row can be
 *   written, the move completes and the new owner serves every unit admitted.
 * - The same at SIGTERM: the node drains what it can, and its shutdown fails (exit code 1)
 *   naming the shard and the user, where it used to report a clean release.
 */
import { randomBytes } from 'node:crypto';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { LimiterService, shardOf } from '../../src/shards/index.js';
import { createTestCluster, strictLimits, type TestCluster } from '../support/cluster.js';
import { runClusterCli, stopClusterClis } from '../support/clusterCli.js';
import { type Api, apiClient } from '../support/http.js';
import { metric } from '../support/metrics.js';
import { storedRow } from '../support/states.js';
import { createKey, createUser, type TestUser, tokensUsed } from '../support/tally.js';
import { waitFor } from '../support/wait.js';

const ids = ['w1', 'w2'];
const packr = new Packr({ useRecords: false });
const SERVICE_TOKEN = `service-${randomBytes(12).toString('hex')}`;
let cluster: TestCluster;
let nc: NatsConnection;
/** The shard the hand-off test moves to w2 (and pins there). */
let movedShard = -1;

beforeAll(async () => {
  cluster = await createTestCluster({
    leaseMs: 3000,
    heartbeatMs: 100,
    env: { TALLY_FLUSH_INTERVAL_MS: '200', TALLY_DRAIN_TIMEOUT_MS: '3000', TALLY_SERVICE_TOKEN: SERVICE_TOKEN },
  });
  await cluster.addTier('strict', strictLimits(10_000, { tokens: 1_000_000 }));
  await cluster.startAll(ids);
  nc = await connect({ servers: cluster.nats.url });
}, 60_000);
afterAll(async () => {
  await stopClusterClis();
  await nc?.close();
  await cluster?.stop();
});

const api = (id: string): Api => apiClient(cluster.nodes.get(id)!.baseUrl);

async function call(subject: string, body: unknown, msgpack: boolean): Promise<{ body: any; errorCode: number | null }> {
  const h = headers();
  if (msgpack) h.set('content-type', 'application/msgpack');
  const reply = await nc.request(subject, msgpack ? packr.pack(body) : JSON.stringify(body), { timeout: 5000, headers: h });
  const code = reply.headers?.get('Nats-Service-Error-Code');
  return { body: msgpack ? packr.unpack(reply.data) : JSON.parse(reply.string()), errorCode: code === undefined || code === '' ? null : Number(code) };
}

/** A strict user (and an API key) whose shard the map gives `owner`, and not `except`. */
async function userOn(owner: string, except?: number): Promise<{ user: TestUser; key: string; shard: number }> {
  const placement = targetPlacement(ids);
  for (;;) {
    const user = await createUser(api('w1'), { adminToken: cluster.adminToken, tier: 'strict' });
    const shard = shardOf(user.id);
    if (placement.get(shard) === owner && shard !== except) return { user, key: (await createKey(api('w1'), user)).key, shard };
  }
}

/** From now on the database refuses `entityKey`'s row with a data exception, as it would a value it cannot store. */
async function refuseRow(entityKey: string, name: string): Promise<void> {
  await cluster.sql.unsafe(`
    create function ${name}() returns trigger language plpgsql as $$
    begin
      if new.entity_key = '${entityKey}' then raise exception 'refused by a test trigger' using errcode = '22023'; end if;
      return new;
    end $$`);
  await cluster.sql.unsafe(`create trigger ${name} before insert or update on actor_state for each row execute function ${name}()`);
}

const logEntries = (id: string) =>
  cluster.nodes
    .get(id)!
    .logs.filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, any>);

describe('values Postgres would refuse', () => {
  it('are answered 400 over HTTP and the NATS API; oddities that are well-formed are admitted, and the row is written', async () => {
    const { user, key } = await userOn('w1');
    const limiterKey = `odd-\uFFFE-${user.id}`;
    let tokens = 0;
    let requests = 0;

    // HTTP: in a body's values and member names, as JSON escapes.
    const http = [
      '{"cost":1,"resource":"re\\u0000sources"}',
      '{"cost":1,"resource":"\\ud800"}',
      '{"amounts":{"tok\\udc00ens":5}}',
      '{"amounts":{"\\u0000":5}}',
    ];
    for (const raw of http) {
      for (const path of ['/v1/quota/consume', '/v1/quota/reservations']) {
        const answer = await api('w2')('POST', path, { token: key, raw });
        expect({ raw, path, status: answer.status }).toEqual({ raw, path, status: 400 });
      }
    }
    const limiter = await api('w2')('POST', '/v1/limiter/check', { token: SERVICE_TOKEN, raw: '{"key":"k\\u0000","limit":5,"window_ms":60000}' });
    expect(limiter.status).toBe(400);

    // The NATS API: the same, in every string it stores, JSON and MessagePack alike.
    const nats: [string, Record<string, unknown>, boolean][] = [];
    for (const [bad, msgpack] of [
      ['\u0000', false],
      ['\u0000', true],
      ['\ud800', false],
      ['\udc00', false],
    ] as const) {
      nats.push(['quota.consume', { user_id: user.id, idempotency_key: `k${bad}`, amounts: { tokens: 5 } }, msgpack]);
      nats.push(['quota.consume', { user_id: user.id, resource: `r${bad}`, amounts: { tokens: 5 } }, msgpack]);
      nats.push(['quota.consume', { user_id: user.id, amounts: { [`tokens${bad}`]: 5 } }, msgpack]);
      nats.push(['quota.consume', { items: [{ user_id: user.id, idempotency_key: `k${bad}` }] }, msgpack]);
      nats.push(['quota.reserve', { user_id: user.id, resource: `r${bad}`, amounts: { tokens: 5 } }, msgpack]);
      nats.push(['quota.reserve', { user_id: user.id, amounts: { [`${bad}tokens`]: 5 } }, msgpack]);
      nats.push(['limiter.check', { key: `${limiterKey}${bad}`, limit: 5, window_ms: 60_000 }, msgpack]);
    }
    for (const [operation, body, msgpack] of nats) {
      const answer = await call(`tally.v1.${operation}`, body, msgpack);
      const code = answer.errorCode ?? answer.body.results?.[0]?.error?.status;
      expect({ operation, body, msgpack, code }).toEqual({ operation, body, msgpack, code: 400 });
    }

    // Well-formed, if odd: admitted, and stored as sent.
    const longest = `${'\u{1F600}'.repeat(100)}\uFFFE${'x'.repeat(54)}`; // 255 UTF-16 units
    const oddResource = '\uFDD0\u{10FFFF}';
    const oddName = `tokens-${'\uFFFF'.repeat(57)}`; // 64 characters
    const admitted = [
      await call('tally.v1.quota.consume', { user_id: user.id, idempotency_key: longest, amounts: { tokens: 5 } }, true),
      await call('tally.v1.quota.consume', { user_id: user.id, idempotency_key: longest, amounts: { tokens: 5 } }, false), // a replay
      await call('tally.v1.quota.consume', { user_id: user.id, resource: oddResource, amounts: { tokens: 7, [oddName]: 3 } }, false),
      await call('tally.v1.quota.reserve', { user_id: user.id, resource: oddResource, amounts: { tokens: 11, [oddName]: 1 } }, true),
      await call('tally.v1.limiter.check', { key: limiterKey, limit: 5, window_ms: 60_000 }, false),
    ];
    expect(admitted.map((answer) => [answer.errorCode, answer.body.allowed])).toEqual([
      [null, true],
      [null, true],
      [null, true],
      [null, true],
      [null, true],
    ]);
    tokens += 5 + 7 + 11;
    requests += 3;
    const overHttp = await api('w2')('POST', '/v1/quota/consume', {
      token: key,
      headers: { 'idempotency-key': 'h'.repeat(255) },
      raw: `{"resource":"\\ufffe\\ud83d\\ude00","amounts":{"tokens":2,"\\uffff":1}}`,
    });
    expect(overHttp.status).toBe(200);
    tokens += 2;
    requests += 1;

    // Written: the row holds exactly what was admitted, and nothing was quarantined anywhere.
    await waitFor(async () => (await storedRow(cluster.sql, user.id))?.state?.limits?.tokens?.used === tokens, 10_000);
    const row = await storedRow(cluster.sql, user.id);
    expect(row!.state.idem.map((entry: { key: string }) => entry.key).sort()).toEqual([longest, 'h'.repeat(255)].sort());
    expect(row!.state.holds.map((hold: { resource: string; amounts: Record<string, number> }) => [hold.resource, hold.amounts])).toEqual([
      [oddResource, { tokens: 11, [oddName]: 1 }],
    ]);
    // The limiter's key may live on another node, whose flush comes on its own schedule.
    const limiterRows = async () =>
      (await cluster.sql<{ n: number }[]>`select count(*)::int as n from actor_state where entity_key = ${LimiterService.entityKey('service', limiterKey)}`)[0]!
        .n;
    await waitFor(async () => (await limiterRows()) === 1, 10_000);
    expect(await tokensUsed(api('w2'), key)).toBe(tokens);
    const quota = await api('w1')('GET', '/v1/quota', { token: key });
    expect(quota.body.limits.find((limit: { name: string }) => limit.name === 'requests').remaining).toBe(10_000 - requests);
    for (const id of ids) expect(await metric(api(id), 'tally_flush_rows_quarantined_total')).toBe(0);
  }, 60_000);
});

describe('a row the database refuses', () => {
  it('keeps its shard from being handed over until it is written, and loses no usage', async () => {
    const { user, key, shard } = await userOn('w1');
    movedShard = shard;
    await refuseRow(user.id, 'refuse_handoff_row');
    for (let i = 0; i < 20; i++)
      expect((await api(ids[i % 2]!)('POST', '/v1/quota/consume', { token: key, body: { amounts: { tokens: 5 } } })).status).toBe(200);
    await waitFor(async () => (await metric(api('w1'), 'tally_flush_quarantined_rows')) === 1, 5000);

    // Asked to move, the owner does not hand the shard over while the row is refused.
    const asked = await runClusterCli(cluster.nats.url, ['move', String(shard), 'w2', '--timeout', '4']);
    expect(asked.code).not.toBe(0);
    const view = await cluster.view(cluster.nodes.get('w2')!);
    expect(view.shards.moving).toContain(shard);
    expect(
      logEntries('w1').some(
        (entry) => entry.shard === shard && /database refused the state of actors of this shard/.test(entry.msg) && entry.entities?.includes(user.id),
      ),
    ).toBe(true);

    // Once the row can be written, the move completes, and the new owner serves every unit admitted.
    await cluster.sql.unsafe('drop trigger refuse_handoff_row on actor_state');
    await waitFor(async () => {
      const { shards } = await cluster.view(cluster.nodes.get('w2')!);
      return !shards.moving.includes(shard) && (shards as { owners?: (string | null)[] }).owners?.[shard] === 'w2';
    }, 90_000);
    expect(await tokensUsed(api('w1'), key)).toBe(100);
    expect(await tokensUsed(api('w2'), key)).toBe(100);
  }, 120_000);

  it('fails the shutdown of its owner, naming the shard and the user, instead of reporting a clean release', async () => {
    const { user, key, shard } = await userOn('w2', movedShard);
    await refuseRow(user.id, 'refuse_shutdown_row');
    for (let i = 0; i < 10; i++)
      expect((await api(ids[i % 2]!)('POST', '/v1/quota/consume', { token: key, body: { amounts: { tokens: 5 } } })).status).toBe(200);
    await waitFor(async () => (await metric(api('w2'), 'tally_flush_quarantined_rows')) === 1, 5000);

    const leaving = cluster.nodes.get('w2')!;
    leaving.child.kill('SIGTERM');
    expect(await leaving.exited).toBe(1);
    const entries = leaving.logs.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, any>);
    const failed = entries.find((entry) => entry.step === 'release the shards');
    expect(failed).toMatchObject({ level: 'error', err: { type: 'UnwrittenShardsError', shards: [shard], entities: [user.id], count: 1 } });
    // Every other shard was handed over or released as usual: the other node serves them all.
    await waitFor(async () => (await cluster.view(cluster.nodes.get('w1')!)).shards.by_node.w1 === 1024, 15_000);
  }, 90_000);
});
