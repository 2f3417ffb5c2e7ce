/**
 * kill -9 in the middle of a large flush. 20,000 users each consume once and that is
 * flushed; each consumes again, and the node is killed while the flush writing the second
 * round is under way (its first slices written, the rest not). Then every row holds a whole
 * state with either one or both consumes: nothing older than the flush in progress is lost,
 * and no state is half written. A new node serves exactly what the rows hold.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/persistence/index.js';
import { apiClient } from '../support/http.js';
import { createTestDatabase } from '../support/postgres.js';
import { killAllNodes, type NodeProcess, spawnNode } from '../support/process.js';
import { seedUsers } from '../support/seed.js';
import { storedRows } from '../support/states.js';
import { tokensUsed } from '../support/tally.js';
import { makeTempDir } from '../support/tmp.js';
import { waitFor } from '../support/wait.js';

const USERS = 20_000;
const TOKENS = 10;
const FLUSH_MS = 1000;
const TIER = { name: 'crash', limits: [{ name: 'tokens', kind: 'budget', limit: 1e12, period: 'month', resource: 'tokens' }] };

let database: { url: string; drop(): Promise<void> };
let sql: postgres.Sql;
let ids: string[];
let keys: string[];
let env: Record<string, string>;

beforeAll(async () => {
  database = await createTestDatabase();
  sql = postgres(database.url, { max: 2, onnotice: () => {} });
  await migrate(sql);
  const keySecret = randomBytes(32).toString('hex');
  ({ ids, keys } = await seedUsers(sql, { keySecret, users: USERS, tier: TIER }));
  env = {
    DATABASE_URL: database.url,
    TALLY_DATA_DIR: await makeTempDir(),
    TALLY_KEY_SECRET: keySecret,
    TALLY_FLUSH_INTERVAL_MS: String(FLUSH_MS),
  };
}, 60_000);

afterAll(async () => {
  await killAllNodes();
  await sql?.end();
  await database?.drop();
});

async function start(): Promise<NodeProcess> {
  return spawnNode(env);
}

/** One consume of TOKENS for every user, 64 at a time. */
async function consumeAll(baseUrl: string): Promise<void> {
  const body = JSON.stringify({ cost: 1, amounts: { tokens: TOKENS } });
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const answer = await fetch(`${baseUrl}/v1/quota/consume`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body,
      });
      await answer.arrayBuffer();
      if (answer.status !== 200) throw new Error(`consume answered ${answer.status}`);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
}

/** How many users' stored state shows each amount of tokens used. */
async function storedUsage(): Promise<Map<number, number>> {
  const users = new Map<number, number>();
  for (const row of await storedRows(sql)) {
    const used: number = row.state?.limits?.tokens?.used ?? -1;
    users.set(used, (users.get(used) ?? 0) + 1);
  }
  return users;
}

describe('kill -9 during a large flush (postgres)', () => {
  it('keeps everything flushed before it, and leaves every row a whole state', async () => {
    const node = await start();
    await consumeAll(node.baseUrl);
    await waitFor(async () => (await storedUsage()).get(TOKENS) === USERS, 20_000);

    // The rows of 100 users in the middle of the second round are held locked, so the flush
    // that reaches them waits there: the slices before it are written, the ones after are
    // not sent yet. That is when the node is killed.
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const holder = sql.begin(async (tx) => {
      await tx`select 1 from actor_state where entity_key in ${tx(ids.slice(USERS / 2, USERS / 2 + 100))} for update`;
      locked();
      await released;
    });
    await isLocked;
    await consumeAll(node.baseUrl);
    await waitFor(async () => {
      const [waiting] = await sql<{ count: number }[]>`
        select count(*)::int as count from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and query ilike '%insert into actor_state%'`;
      return waiting!.count > 0;
    }, 20_000);
    node.child.kill('SIGKILL');
    await node.exited;
    release();
    await holder;
    // The statement that waited may still commit its slice (Postgres finishes it): whole rows.
    await waitFor(async () => {
      const [busy] = await sql<{ count: number }[]>`
        select count(*)::int as count from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and query ilike '%insert into actor_state%' and state = 'active'`;
      return busy!.count === 0;
    }, 10_000);

    const usage = await storedUsage();
    const twice = usage.get(2 * TOKENS) ?? 0;
    const once = usage.get(TOKENS) ?? 0;
    expect(once + twice).toBe(USERS); // no other value, no row missing
    expect(twice).toBeGreaterThan(0);
    expect(once).toBeGreaterThan(0); // the slices after the held one were never written
    // Whole states: every row has the shape of a complete one.
    const rows = await storedRows(sql);
    const incomplete = rows.filter(
      ({ state }) => !(state?.v === 1 && state.limits?.tokens?.kind === 'budget' && typeof state.limits.tokens.period_start === 'number'),
    );
    expect(incomplete).toEqual([]);

    // A new node serves what the rows hold, for users of both kinds.
    const storedFor = new Map(rows.map((row) => [row.entityKey, row.state.limits.tokens.used as number]));
    const sample = [...ids.keys()]
      .filter((i) => storedFor.get(ids[i]!) === TOKENS)
      .slice(0, 100)
      .concat([...ids.keys()].filter((i) => storedFor.get(ids[i]!) === 2 * TOKENS).slice(0, 100));
    expect(sample).toHaveLength(200);
    const api = apiClient((await start()).baseUrl);
    for (const i of sample) expect(await tokensUsed(api, keys[i]!)).toBe(storedFor.get(ids[i]!));
  }, 120_000);
});
