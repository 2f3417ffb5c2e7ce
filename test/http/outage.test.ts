/**
 * A database that goes away for 10 s and comes back, under load. Meanwhile consumes are
 * decided from memory, what needs the database (registration, login) answers 503 problems,
 * readiness says the database is unreachable (without its error text); afterwards readiness
 * recovers by itself and the usage written is exact: every admitted unit, each once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric } from '../support/metrics.js';
import { createPrivatePostgres, type PrivatePostgres } from '../support/privatePostgres.js';
import { createKey, createUser, type StartedNode, startTestNode, tokensUsed } from '../support/tally.js';
import { sleep, waitFor } from '../support/wait.js';

const OUTAGE_MS = 10_000;
const KEYS = 4;

let database: PrivatePostgres;
let t: StartedNode;

beforeAll(async () => {
  database = await createPrivatePostgres();
  t = await startTestNode({ databaseUrl: database.url, env: { TALLY_ACTOR_IDLE_MS: '1000' } });
});
afterAll(async () => {
  await t?.stop();
  await database?.destroy();
});

describe('the database goes away for 10 s under load', () => {
  it('keeps deciding from memory, answers 503 for what needs the database, and writes exactly what it admitted', { timeout: 60_000 }, async () => {
    const tier = {
      limits: [
        { name: 'requests', kind: 'rate', limit: 1_000_000, period_ms: 60_000 },
        { name: 'tokens', kind: 'budget', limit: 1_000_000_000, period: 'month' },
      ],
    };
    expect((await t.api('PUT', '/v1/admin/tiers/outage', { token: t.adminToken, body: tier })).status).toBe(200);
    const keys: string[] = [];
    for (let i = 0; i < KEYS; i++) keys.push((await createKey(t.api, await createUser(t.api, { tier: 'outage', adminToken: t.adminToken }))).key);

    // A limiter key checked once before the outage, then left idle.
    const checkIdle = () => t.api('POST', '/v1/limiter/check', { token: t.serviceToken, body: { key: 'idle-tenant', limit: 10, window_ms: 60_000 } });
    expect((await checkIdle()).status).toBe(200);

    // The load: each key consumed in turn, all along, counting what was admitted.
    const admitted = keys.map(() => 0);
    const failures: string[] = [];
    let loading = true;
    const workers = keys.map(async (key, i) => {
      while (loading) {
        try {
          const res = await t.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1 } });
          if (res.status === 200) admitted[i]!++;
          else failures.push(`${res.status} ${res.text}`);
        } catch (error) {
          failures.push(String(error)); // the node is gone: the test failed elsewhere
          loading = false;
        }
        await sleep(5);
      }
    });
    await sleep(500);

    await database.stop();
    const outageStarted = Date.now();
    const duringOutage = admitted.reduce((a, b) => a + b, 0);
    await waitFor(async () => (await t.api('GET', '/health/ready')).status === 503, 5000);
    const ready = await t.api('GET', '/health/ready');
    expect(ready.body.checks.database).toEqual({ ok: false, detail: 'unreachable' });
    expect(ready.text).not.toMatch(/ECONNREFUSED|connect|127\.0\.0\.1/);

    const register = await t.api('POST', '/v1/users', { body: { email: `away-${Date.now()}@example.com`, password: 'correct horse battery' } });
    expect(register.status).toBe(503);
    expect(register.headers.get('content-type')).toBe('application/problem+json');
    expect(register.headers.get('retry-after')).toBe('1');
    expect(register.body.type).toBe('urn:tally:problem:storage-unavailable');
    const login = await t.api('POST', '/v1/sessions', { body: { email: `nobody-${Date.now()}@example.com`, password: 'whatever it is' } });
    expect(login.status).toBe(503);
    expect(login.body.type).toBe('urn:tally:problem:storage-unavailable');

    // Idle, clean actors are still passivated while every flush fails: the idle limiter leaves
    // memory, and its next check needs the database.
    await sleep(3000);
    const idleAgain = await checkIdle();
    expect(idleAgain.status).toBe(503);
    expect(idleAgain.body.type).toBe('urn:tally:problem:storage-unavailable');

    await sleep(OUTAGE_MS - (Date.now() - outageStarted));
    expect(admitted.reduce((a, b) => a + b, 0) - duringOutage).toBeGreaterThan(100); // decided from memory all along
    expect(await metric(t.api, 'tally_flush_total', { result: 'error' })).toBeGreaterThan(0);
    expect(await metric(t.api, 'tally_actors_dirty')).toBeGreaterThanOrEqual(KEYS);

    // The pool retries a lost connection at least once a second: back within a few seconds.
    await database.start();
    await waitFor(async () => (await t.api('GET', '/health/ready')).status === 200, 5000);
    expect((await t.api('POST', '/v1/users', { body: { email: `back-${Date.now()}@example.com`, password: 'correct horse battery' } })).status).toBe(201);
    await sleep(500);
    loading = false;
    await Promise.all(workers);
    expect(failures).toEqual([]);
    expect(await metric(t.api, 'tally_flush_rows_quarantined_total')).toBe(0);

    // A restart reads what was written: exactly the units admitted, none lost, none twice.
    await t.stop();
    const drop = t.dropDatabase;
    t = { ...(await startTestNode({ databaseUrl: database.url, dataDir: t.dataDir })), dropDatabase: drop };
    for (let i = 0; i < KEYS; i++) {
      expect(await tokensUsed(t.api, keys[i]!), `key ${i}`).toBe(admitted[i]);
    }
  });
});
