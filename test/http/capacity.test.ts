/**
 * A database that reads but refuses writes (a full disk, a broken trigger): actors whose
 * state cannot be written stay in memory, quarantined; idle clean ones are still passivated;
 * and at TALLY_MAX_ACTORS a new activation answers 503 with Retry-After instead of growing
 * the heap. Once writes are taken again, everything is written and activations resume.
 */
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric } from '../support/metrics.js';
import { createKey, createUser, type StartedNode, startTestNode } from '../support/tally.js';
import { sleep } from '../support/wait.js';

const MAX_ACTORS = 100;
let t: StartedNode;
let sql: postgres.Sql;

beforeAll(async () => {
  t = await startTestNode({ backend: 'postgres', env: { TALLY_MAX_ACTORS: String(MAX_ACTORS), TALLY_ACTOR_IDLE_MS: '1000' } });
  sql = postgres(t.databaseUrl!, { max: 1, onnotice: () => {} });
});
afterAll(async () => {
  await sql.end();
  await t.stop();
  await t.dropDatabase();
});

const check = (key: string) => t.api('POST', '/v1/limiter/check', { token: t.serviceToken, body: { key, limit: 10, window_ms: 60_000 } });

describe('a node whose writes are refused', () => {
  it('keeps what it cannot write, passivates what it can drop, and refuses new actors at the cap', async () => {
    const user = await createUser(t.api);
    const key = (await createKey(t.api, user)).key;
    expect((await t.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1 } })).status).toBe(200);
    await sleep(300); // flushed: the user's actor is clean

    // From now on the service limiter's rows are refused with a data exception (class 22).
    await sql`
      create function refuse_limiters() returns trigger language plpgsql as $$
      begin
        if new.entity_key like 'limiter:service:%' then raise exception 'disk full (simulated)' using errcode = '22023'; end if;
        return new;
      end $$`;
    await sql`create trigger refuse_limiters before insert or update on actor_state for each row execute function refuse_limiters()`;

    // Twenty limiter actors whose state cannot be written: they stay, quarantined.
    for (let i = 0; i < 20; i++) expect((await check(`tenant-${i}`)).status).toBe(200);
    // Meanwhile the user's actor, idle for 1 s, is passivated although every flush of the
    // limiters fails: its next request loads it again.
    await sleep(2500);
    expect(await metric(t.api, 'tally_flush_rows_quarantined_total')).toBeGreaterThanOrEqual(20);
    const loadsBefore = await metric(t.api, 'tally_store_loads_total', { kind: 'user' });
    expect((await t.api('POST', '/v1/quota/consume', { token: key, body: { cost: 1 } })).status).toBe(200);
    expect(await metric(t.api, 'tally_store_loads_total', { kind: 'user' })).toBe(loadsBefore + 1);

    // More of them, up to the cap (and its 10 % overshoot): then new actors are refused.
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<typeof check>> | undefined;
    for (let i = 20; i < 2 * MAX_ACTORS && refused === undefined; i++) {
      const res = await check(`tenant-${i}`);
      statuses.push(res.status);
      if (res.status !== 200) refused = res;
      if (i % 20 === 19) await sleep(150); // let flushes run (and fail)
    }
    expect(refused?.status).toBe(503);
    expect(refused?.headers.get('retry-after')).toBe('1');
    expect(refused?.body.type).toBe('urn:tally:problem:at-capacity');
    expect(await metric(t.api, 'tally_actors_active')).toBeLessThanOrEqual(MAX_ACTORS * 1.1); // the overshoot, no more
    expect(await metric(t.api, 'tally_actors_refused_total')).toBeGreaterThan(0);
    expect(await metric(t.api, 'tally_flush_quarantined_rows')).toBeGreaterThan(MAX_ACTORS * 0.9);
    expect((await t.api('GET', '/health/ready')).status).toBe(200); // the database answers: this is not an outage
    const written = 20 + statuses.filter((status) => status === 200).length;

    // Writes are taken again: the quarantined rows are written at their next try, and new actors fit.
    await sql`drop trigger refuse_limiters on actor_state`;
    const deadline = Date.now() + 20_000;
    while ((await metric(t.api, 'tally_flush_quarantined_rows')) > 0 && Date.now() < deadline) await sleep(250);
    expect(await metric(t.api, 'tally_flush_quarantined_rows')).toBe(0);
    const [row] = await sql<{ count: number }[]>`select count(*)::int as count from actor_state where entity_key like 'limiter:service:tenant-%'`;
    expect(row?.count).toBe(written);
    expect((await check('tenant-after')).status).toBe(200);
  });
});
