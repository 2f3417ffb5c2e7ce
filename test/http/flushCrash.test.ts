/**
 * kill -9 in the middle of a large flush, on the Postgres server and on embedded PGlite.
 * 20,000 users each consume once and that is flushed; each consumes again, and the node is
 * killed while the flush writing the second round is under way (its first slices written,
 * the rest not). Then every row holds a whole state with either one or both consumes:
 * nothing older than the flush in progress is lost, and no state is half written. A new
 * node serves exactly what the rows hold.
 *
 * The flush is held at the middle user: on Postgres by a transaction holding that user's
 * row locked, on PGlite (one session, inside the node) by a trigger that sleeps when the
 * row is updated. PGlite dies with the node, mid-statement, and recovers at the next open.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../../src/persistence/database.js';
import { migrate, openDatabase } from '../../src/persistence/index.js';
import { silentLog } from '../support/database.js';
import { apiClient } from '../support/http.js';
import { createTestDatabase } from '../support/postgres.js';
import { killAllNodes, type NodeProcess, spawnNode } from '../support/process.js';
import { type SeededUsers, type SeedOptions, seedUsers } from '../support/seed.js';
import { type StoredRow, storedRows } from '../support/states.js';
import { tokensUsed } from '../support/tally.js';
import { makeTempDir } from '../support/tmp.js';
import { waitFor } from '../support/wait.js';

const USERS = 20_000;
const TOKENS = 10;
const FLUSH_MS = 1000;
const TIER = { name: 'crash', limits: [{ name: 'tokens', kind: 'budget', limit: 1e12, period: 'month', resource: 'tokens' }] };

/** One consume of TOKENS for every user, 64 at a time. */
async function consumeAll(baseUrl: string, keys: readonly string[]): Promise<void> {
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
function usageOf(rows: readonly StoredRow[]): Map<number, number> {
  const users = new Map<number, number>();
  for (const row of rows) {
    const used: number = row.state?.limits?.tokens?.used ?? -1;
    users.set(used, (users.get(used) ?? 0) + 1);
  }
  return users;
}

/** The node's count of actors with changes not yet written (queued, or in the flush in progress). */
async function unwritten(node: NodeProcess): Promise<number> {
  const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('tally_actors_dirty '));
  return Number(line?.split(' ')[1]);
}

/**
 * Where the node's rows are, and how the test holds the second round's flush at the middle
 * user. `hold` runs before the second round; its `held` says whether the flush waits there
 * now, and `rows` reads every row once the node is dead (and whatever it left running is
 * over).
 */
interface Backend {
  env: Record<string, string>;
  seed(options: SeedOptions): Promise<SeededUsers>;
  /** How many users' rows hold the first round, as far as can be seen while the node runs. */
  rowsWhileServing(node: NodeProcess): Promise<number>;
  hold(middle: readonly string[]): Promise<{ held(node: NodeProcess): Promise<boolean>; rows(): Promise<StoredRow[]> }>;
  drop(): Promise<void>;
}

async function onPostgres(): Promise<Backend> {
  const database = await createTestDatabase();
  const sql = postgres(database.url, { max: 2, onnotice: () => {} });
  await migrate(sql);
  return {
    env: { DATABASE_URL: database.url, TALLY_DATA_DIR: await makeTempDir() },
    seed: (options) => seedUsers(sql, options),
    rowsWhileServing: async () => usageOf(await storedRows(sql)).get(TOKENS) ?? 0,
    async hold(middle) {
      let release!: () => void;
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => {
        locked = resolve;
      });
      const holder = sql.begin(async (tx) => {
        await tx`select 1 from actor_state where entity_key in ${tx(middle)} for update`;
        locked();
        await released;
      });
      await isLocked;
      return {
        async held() {
          const [waiting] = await sql<{ count: number }[]>`
            select count(*)::int as count from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock' and query ilike '%insert into actor_state%'`;
          return waiting!.count > 0;
        },
        async rows() {
          release();
          await holder;
          // The statement that waited may still commit its slice (Postgres finishes it): whole rows.
          await waitFor(async () => {
            const [busy] = await sql<{ count: number }[]>`
              select count(*)::int as count from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid() and query ilike '%insert into actor_state%' and state = 'active'`;
            return busy!.count === 0;
          }, 10_000);
          return storedRows(sql);
        },
      };
    },
    async drop() {
      await sql.end();
      await database.drop();
    },
  };
}

async function onPglite(): Promise<Backend> {
  const dataDir = await makeTempDir();
  /** The embedded database, opened by the test while no node has it. */
  const opened = async <T>(use: (sql: Sql) => Promise<T>): Promise<T> => {
    const database = await openDatabase({ dataDir, log: silentLog });
    try {
      return await use(database.sql);
    } finally {
      await database.close();
    }
  };
  await opened((sql) => migrate(sql));
  return {
    env: { TALLY_DATA_DIR: dataDir },
    // The trigger that holds the second round's flush goes in with the seed: the node holds
    // the only session from its start. It fires on updates only, so not in the first round,
    // which inserts every row.
    seed: (options) =>
      opened(async (sql) => {
        const seeded = await seedUsers(sql, { ...options, via: 'insert' });
        await sql`create table held_user (id text primary key)`;
        await sql`insert into held_user values (${seeded.ids[USERS / 2]!})`;
        await sql`
          create function hold_the_flush() returns trigger language plpgsql as $$
          begin
            if new.entity_key = (select id from held_user) then perform pg_sleep(300); end if;
            return new;
          end $$`;
        await sql`create trigger hold_the_flush before update on actor_state for each row execute function hold_the_flush()`;
        return seeded;
      }),
    // The node holds the only session: what it wrote shows in its own count.
    rowsWhileServing: async (node) => ((await unwritten(node)) === 0 ? USERS : 0),
    async hold() {
      return {
        // Held: unwritten actors stay as many, neither all nor none, for two seconds (two
        // flush intervals: a flush that went on would have written a slice).
        async held(node) {
          const before = await unwritten(node);
          await new Promise((resolve) => setTimeout(resolve, 2 * FLUSH_MS));
          return before > 2 * 1000 && before < USERS - 1000 && (await unwritten(node)) === before;
        },
        rows: () =>
          opened(async (sql) => {
            await sql`drop trigger hold_the_flush on actor_state`;
            return storedRows(sql);
          }),
      };
    },
    drop: () => Promise.resolve(),
  };
}

describe.each([
  ['postgres', onPostgres],
  ['pglite', onPglite],
] as const)('kill -9 during a large flush (%s)', (_kind, open) => {
  let backend: Backend | undefined;
  let ids: string[];
  let keys: string[];
  let env: Record<string, string>;

  beforeAll(async () => {
    backend = await open();
    const keySecret = randomBytes(32).toString('hex');
    ({ ids, keys } = await backend.seed({ keySecret, users: USERS, tier: TIER }));
    env = { ...backend.env, TALLY_KEY_SECRET: keySecret, TALLY_FLUSH_INTERVAL_MS: String(FLUSH_MS) };
  }, 60_000);

  afterAll(async () => {
    await killAllNodes();
    await backend?.drop();
  });

  it('keeps everything flushed before it, and leaves every row a whole state', async () => {
    const store = backend!;
    const node = await spawnNode(env);
    await consumeAll(node.baseUrl, keys);
    await waitFor(async () => (await store.rowsWhileServing(node)) === USERS, 30_000);

    // The flush writing the second round stops at the middle users: the slices before them
    // are written, the ones after are not sent yet. That is when the node is killed.
    const hold = await store.hold(ids.slice(USERS / 2, USERS / 2 + 100));
    await consumeAll(node.baseUrl, keys);
    await waitFor(() => hold.held(node), 20_000);
    node.child.kill('SIGKILL');
    await node.exited;

    const rows = await hold.rows();
    const usage = usageOf(rows);
    const twice = usage.get(2 * TOKENS) ?? 0;
    const once = usage.get(TOKENS) ?? 0;
    expect(once + twice).toBe(USERS); // no other value, no row missing
    expect(twice).toBeGreaterThan(0);
    expect(once).toBeGreaterThan(0); // the slices after the held one were never written
    // Whole states: every row has the shape of a complete one.
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
    const api = apiClient((await spawnNode(env)).baseUrl);
    for (const i of sample) expect(await tokensUsed(api, keys[i]!)).toBe(storedFor.get(ids[i]!));
  }, 180_000);
});
