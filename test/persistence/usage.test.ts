/**
 * The usage history in storage, on both databases: closed hours added exactly once with the
 * state that carried them, the monthly partitions (made ahead, made on demand, dropped past
 * retention), a query across two partitions, and the last millisecond of a month.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStateRow } from '../../src/persistence/actorState.js';
import { Store } from '../../src/persistence/index.js';
import type { LiveUsage, PendingUsage } from '../../src/shards/index.js';
import { DATABASE_KINDS, openTestDatabase, type TestDatabase } from '../support/database.js';

const HOUR = 3_600_000;
let serial = 0;

function utc(text: string): number {
  return Date.parse(text);
}

/** A state row for `user` under (shard, epoch) that adds `hours` of usage to the history. */
function stateRow(user: string, shard: number, epoch: number, seq: number, usage: PendingUsage | null, liveUsage: LiveUsage | null = null) {
  const state = { v: 1, limits: {}, ...(liveUsage === null ? {} : { usage: { ...liveUsage, rolls: usage?.rolls ?? 0 } }) };
  return encodeStateRow({ entityKey: user, shard, epoch, seq, state, expiresAt: null, usage, liveUsage });
}

function closedHour(roll: number, at: number, amount: number, resource = 'tokens', key = 'key_a') {
  return { roll, hour: at - (at % HOUR), cells: [resource, key, amount, 1, 0] };
}

describe.each(DATABASE_KINDS)('usage history on %s', (kind) => {
  let db: TestDatabase;
  let store: Store;
  let epoch: number;
  const shard = 77;

  beforeAll(async () => {
    db = await openTestDatabase(kind);
    store = new Store(db.database.sql);
    [epoch] = [...(await store.claimShards([shard], 'node-a')).values()] as [number];
  });
  afterAll(() => db?.cleanup());

  const partitions = async () =>
    (
      await db.database.sql<{ name: string }[]>`
        select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'usage'::regclass order by 1`
    ).map((row) => row.name);
  const total = async (user: string) => {
    const { results } = await store.queryUsage({
      start: new Date(0),
      end: new Date(utc('2100-01-01T00:00:00Z')),
      bucket: '1d',
      groupBy: new Set(),
      userId: user,
      limit: 100,
    });
    return results.reduce((sum, result) => sum + result.amount, 0);
  };

  it('has this month’s partition and the next two’s from the migration on', async () => {
    const now = new Date();
    const names = [0, 1, 2].map((ahead) => {
      const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + ahead, 1));
      return `usage_${month.getUTCFullYear()}_${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
    });
    expect(await partitions()).toEqual(expect.arrayContaining(names));
  });

  it('makes partitions ahead idempotently, and drops those past retention, whole months only', async () => {
    const first = await store.maintainUsagePartitions(new Date('2031-05-20T10:00:00Z'), new Date(0));
    expect(first).toEqual({ made: 3, dropped: [] });
    expect(await store.maintainUsagePartitions(new Date('2031-05-31T23:59:59Z'), new Date(0))).toEqual({ made: 0, dropped: [] });
    expect(await partitions()).toEqual(expect.arrayContaining(['usage_2031_05', 'usage_2031_06', 'usage_2031_07']));
    // Retention from 2031-06-15: May ended before it, June did not (its first half is still kept).
    const { dropped } = await store.maintainUsagePartitions(new Date('2031-05-20T10:00:00Z'), new Date('2031-06-15T00:00:00Z'));
    expect(dropped).toContain('usage_2031_05');
    expect(dropped).not.toContain('usage_2031_06');
    expect(await partitions()).toEqual(expect.arrayContaining(['usage_2031_06', 'usage_2031_07']));
    expect(await partitions()).not.toContain('usage_2031_05');
    // Rows of a dropped month arriving late make their partition again rather than fail the write.
    const user = `user_late_${serial++}`;
    const written = await store.writeStates([stateRow(user, shard, epoch, 1, { rolls: 1, hours: [closedHour(1, utc('2031-05-10T12:00:00Z'), 9)] })]);
    expect(written).toEqual({ written: 1, fenced: [] });
    expect(await partitions()).toContain('usage_2031_05');
    expect(await total(user)).toBe(9);
  });

  it('adds each roll once: a write sent again after its answer was lost adds nothing', async () => {
    const user = `user_once_${serial++}`;
    const at = utc('2026-12-03T10:15:00Z');
    const first = stateRow(user, shard, epoch, 1, { rolls: 1, hours: [closedHour(1, at, 100)] });
    await store.writeStates([first]);
    await store.writeStates([first]); // the same write again
    expect(await total(user)).toBe(100);
    // The next roll, sent with the first still listed (a copy loaded before the first was known added).
    await store.writeStates([stateRow(user, shard, epoch, 2, { rolls: 2, hours: [closedHour(1, at, 100), closedHour(2, at, 5)] })]);
    expect(await total(user)).toBe(105);
  });

  it('adds nothing for a row the fence refuses', async () => {
    const user = `user_fenced_${serial++}`;
    const result = await store.writeStates([stateRow(user, shard, epoch - 1, 1, { rolls: 1, hours: [closedHour(1, utc('2026-12-03T10:15:00Z'), 7)] })]);
    expect(result.fenced).toEqual([user]);
    expect(await total(user)).toBe(0);
  });

  it('exports a month by user, resource and day, the hours still in state rows included', async () => {
    const user = `user_export_${serial++}`;
    await db.database.sql`insert into users (id, email, tier, password_hash) values (${user}, ${`${user}@example.com`}, 'pro', 'x')`;
    const day = utc('2026-09-14T08:30:00Z');
    await store.writeStates([stateRow(user, shard, epoch, 1, { rolls: 2, hours: [closedHour(1, day, 10), closedHour(2, day + HOUR, 5, 'default')] })]);
    // This hour's counters, as a state row holds them (not yet rolled).
    const live = { hour: day + 2 * HOUR - ((day + 2 * HOUR) % HOUR), cells: ['tokens', 'key_a', 7, 1, 2] };
    await store.writeStates([stateRow(user, shard, epoch, 2, null, live)]);
    const lines = [];
    for await (const page of store.exportUsage(new Date('2026-09-01T00:00:00Z'))) lines.push(...page.filter((line) => line.userId === user));
    expect(lines).toEqual([
      { userId: user, tier: 'pro', resource: 'default', day: '2026-09-14', amount: 5, requests: 1, denied: 0 },
      { userId: user, tier: 'pro', resource: 'tokens', day: '2026-09-14', amount: 17, requests: 2, denied: 2 },
    ]);
    expect(await store.countUsers()).toBeGreaterThan(0);
  });

  it('counts the live hour of a row written before migration 010 (in its JSON state) until its next write', async () => {
    const user = `user_legacy_${serial++}`;
    await db.database.sql`insert into users (id, email, tier, password_hash) values (${user}, ${`${user}@example.com`}, 'pro', 'x')`;
    const hour = utc('2026-08-03T10:00:00Z');
    const legacy = { v: 1, limits: {}, usage: { hour, rolls: 0, cells: ['tokens', 'key_a', 11, 2, 1] } };
    await db.database.sql`insert into actor_state (entity_key, shard, epoch, state) values (${user}, ${shard}, ${epoch}, ${db.database.sql.json(legacy)})`;
    const lines = async () => {
      const found = [];
      for await (const page of store.exportUsage(new Date('2026-08-01T00:00:00Z'))) found.push(...page.filter((line) => line.userId === user));
      return found;
    };
    expect(await lines()).toEqual([{ userId: user, tier: 'pro', resource: 'tokens', day: '2026-08-03', amount: 11, requests: 2, denied: 1 }]);
    // Its next write stores the counters in `usage_live`, and the JSON state is gone.
    await store.writeStates([stateRow(user, shard, epoch, 1, null, { hour, cells: ['tokens', 'key_a', 12, 3, 1] })]);
    expect(await lines()).toEqual([{ userId: user, tier: 'pro', resource: 'tokens', day: '2026-08-03', amount: 12, requests: 3, denied: 1 }]);
  });

  it('puts 23:59:59.999 UTC on the last day of the month in that month, and queries across the two partitions', async () => {
    const user = `user_edge_${serial++}`;
    const lastMs = utc('2026-11-30T23:59:59.999Z');
    const firstMs = utc('2026-12-01T00:00:00.000Z');
    await store.writeStates([stateRow(user, shard, epoch, 1, { rolls: 2, hours: [closedHour(1, lastMs, 30), closedHour(2, firstMs, 4)] })]);
    const [row] = await db.database.sql<{ partition: string }[]>`
      select tableoid::regclass::text as partition from usage where user_id = ${user} and amount = 30`;
    expect(row?.partition).toBe('usage_2026_11');

    const hours = await store.queryUsage({
      start: new Date('2026-11-30T22:30:00Z'),
      end: new Date('2026-12-01T02:00:00Z'),
      bucket: '1h',
      groupBy: new Set(),
      userId: user,
      limit: 100,
    });
    expect(hours.results.map((result) => [new Date(result.start).toISOString(), result.amount])).toEqual([
      ['2026-11-30T23:00:00.000Z', 30],
      ['2026-12-01T00:00:00.000Z', 4],
    ]);
    const days = await store.queryUsage({
      start: new Date('2026-11-30T00:00:00Z'),
      end: new Date('2026-12-02T00:00:00Z'),
      bucket: '1d',
      groupBy: new Set(),
      userId: user,
      limit: 100,
    });
    expect(days.results.map((result) => [new Date(result.start).toISOString(), result.amount])).toEqual([
      ['2026-11-30T00:00:00.000Z', 30],
      ['2026-12-01T00:00:00.000Z', 4],
    ]);
  });
});
