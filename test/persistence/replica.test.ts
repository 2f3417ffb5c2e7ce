/**
 * The replica's rules, on the real local Redis (a key prefix of this run's own): which copy
 * an activation starts from, and that Redis never takes a copy older than the one it holds.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseCopy, openReplica, type RedisReplica } from '../../src/persistence/index.js';
import { REDIS_URL, redisPrefix } from '../support/redis.js';

const log = pino({ level: 'silent' });
const row = (epoch: number, seq: number, state: unknown = { at: 'postgres' }) => ({ state, epoch, seq });
const copy = (epoch: number, seq: number, state: unknown = { at: 'redis' }) => ({ epoch, seq, state });

describe('choosing the copy an activation starts from', () => {
  it('takes the replica only when (epoch, seq) is newer than the row and the epoch is not past the fence', () => {
    expect(chooseCopy(row(3, 10), copy(3, 11), 4)).toEqual({ state: { at: 'redis' }, seq: 11, source: 'redis' });
    expect(chooseCopy(row(3, 10), copy(3, 10), 4).source).toBe('postgres');
    expect(chooseCopy(row(3, 10), copy(3, 9), 4).source).toBe('postgres');
    // A later owner's copy wins whatever its sequence: it was loaded from the row and went on.
    expect(chooseCopy(row(3, 10), copy(4, 2), 5).source).toBe('redis');
    // An older owner's copy loses whatever its sequence: a newer owner wrote the row after it.
    expect(chooseCopy(row(4, 2), copy(3, 99), 5).source).toBe('postgres');
    // Past the fence: not a copy this activation may trust.
    expect(chooseCopy(row(3, 10), copy(6, 11), 5).source).toBe('postgres');
    expect(chooseCopy(row(3, 10), copy(4, 11), null).source).toBe('postgres');
  });

  it('takes a replica copy when there is no row, and nothing when there is neither', () => {
    expect(chooseCopy(row(0, 0, null), copy(2, 5), 3)).toEqual({ state: { at: 'redis' }, seq: 5, source: 'redis' });
    expect(chooseCopy(row(0, 0, null), null, 3)).toEqual({ state: null, seq: 0, source: 'none' });
    expect(chooseCopy(row(2, 7), null, 3)).toEqual({ state: { at: 'postgres' }, seq: 7, source: 'postgres' });
  });
});

describe('the Redis replica', () => {
  const keys = redisPrefix();
  let replica: RedisReplica;
  const now = Date.now();

  beforeAll(async () => {
    replica = await openReplica(REDIS_URL, { prefix: keys.prefix, incarnation: 'db1', ttlMs: 60_000, readTimeoutMs: 1000 }, log);
    await waitReady(replica);
  });
  afterAll(async () => {
    await replica?.close();
    await keys.clear();
  });

  it('gives back what it was given, as Postgres would (JSON round trip)', async () => {
    const state = {
      v: 1,
      limits: { requests: { kind: 'rate', tat: 1_733_390_000_123.5 }, tokens: { kind: 'budget', used: 1500, period_start: 1_733_011_200_000 } },
      holds: [{ id: 'r1', cost: 1, resource: 'default', created_at: 1, expires_at: 2, held: { tokens: 4000 }, marks: {}, amounts: { tokens: 4000 } }],
      idem: [{ key: 'k', fingerprint: 'f', created_at: 3, answer: { allowed: true, limits: [{ name: 'tokens', remaining: 0, reset_at: 'x' }] } }],
    };
    expect(await replica.push([{ entityKey: 'u-roundtrip', shard: 7, epoch: 3, seq: 12, state }], now)).toBe(1);
    const [found] = await replica.read(['u-roundtrip']);
    expect(found).toEqual({ epoch: 3, seq: 12, state: JSON.parse(JSON.stringify(state)) });
  });

  it('never replaces a later epoch’s copy; within one epoch the last push wins', async () => {
    const put = (epoch: number, seq: number) => replica.push([{ entityKey: 'u-order', shard: 1, epoch, seq, state: { epoch, seq } }], now);
    expect(await put(5, 20)).toBe(1);
    // An older owner, whatever its sequence: refused.
    expect(await put(4, 99)).toBe(0);
    expect((await replica.read(['u-order']))[0]).toEqual({ epoch: 5, seq: 20, state: { epoch: 5, seq: 20 } });
    // The same owner again (its sequence started over, say after its row was deleted): taken.
    expect(await put(5, 3)).toBe(1);
    // A newer owner: taken.
    expect(await put(6, 1)).toBe(1);
    expect(await replica.read(['u-order', 'u-absent'])).toEqual([{ epoch: 6, seq: 1, state: { epoch: 6, seq: 1 } }, null]);
    const ttl = await keys.redis.pttl(`${keys.prefix}db1:u-order`);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('refuses snapshots under an epoch a claim has passed, and never lowers the fence', async () => {
    const put = (epoch: number) => replica.push([{ entityKey: 'u-fenced', shard: 9, epoch, seq: epoch, state: { epoch } }], now);
    await replica.fence(new Map([[9, 7]]));
    // A former owner still pushing under 6, before the new owner has pushed this actor.
    expect(await put(6)).toBe(0);
    expect((await replica.read(['u-fenced']))[0]).toBeNull();
    expect(await put(7)).toBe(1);
    await replica.fence(new Map([[9, 5]]));
    expect(await keys.redis.hget(`${keys.prefix}db1:#fence`, '9')).toBe('7');
  });

  it('lets a snapshot whose state stops mattering expire with it', async () => {
    await replica.push([{ entityKey: 'lim:x', shard: 2, epoch: 1, seq: 1, state: {}, expiresAt: now + 5000 }], now);
    const ttl = await keys.redis.pttl(`${keys.prefix}db1:lim:x`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5000);
  });

  it('writes many actors in one push, each under its own rule, past a key that is not its own', async () => {
    await keys.redis.set(`${keys.prefix}db1:u-many-7`, 'not a hash');
    const rows = Array.from({ length: 450 }, (_, i) => ({ entityKey: `u-many-${i}`, shard: 100 + (i % 500), epoch: 2, seq: i + 1, state: { i } }));
    expect(await replica.push(rows, now)).toBe(449);
    const found = await replica.read(rows.map((r) => r.entityKey));
    expect(found.map((f) => (f === null ? null : (f.state as { i: number }).i))).toEqual(rows.map((_, i) => (i === 7 ? null : i)));
  });
});

describe('a prefix that served another database', () => {
  const keys = redisPrefix();
  afterAll(() => keys.clear());

  const captured = () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    return { lines, log: pino({ level: 'info' }, sink) };
  };
  const open = async (incarnation: string, logger = log) => {
    const replica = await openReplica(REDIS_URL, { prefix: keys.prefix, incarnation, ttlMs: 60_000, readTimeoutMs: 1000 }, logger);
    await waitReady(replica);
    // The prefix is claimed on connection; its answer follows the ready event.
    await new Promise((resolve) => setTimeout(resolve, 50));
    return replica;
  };
  const now = Date.now();

  it('is taken over by a new database: the old copies are never read, the old fence is deleted, with one info line', async () => {
    // The layout from before incarnations, with a fence far ahead (a database that lived longer).
    await keys.redis.hset(`${keys.prefix}#fence`, '3', '1000');
    const first = captured();
    const old = await open('db-old', first.log);
    expect(first.lines.filter((line) => line.includes('served another database'))).toHaveLength(1);
    expect(await keys.redis.exists(`${keys.prefix}#fence`)).toBe(0);
    await old.fence(new Map([[3, 900]]));
    expect(await old.push([{ entityKey: 'u-kept', shard: 3, epoch: 900, seq: 5, state: { by: 'old' } }], now)).toBe(1);
    await old.close();

    // A fresh database under the same prefix: its epochs start low again.
    const second = captured();
    const fresh = await open('db-new', second.log);
    expect(second.lines.filter((line) => line.includes('served another database') && line.includes('db-old'))).toHaveLength(1);
    expect(await keys.redis.exists(`${keys.prefix}db-old:#fence`)).toBe(0);
    expect(await fresh.read(['u-kept'])).toEqual([null]);
    await fresh.fence(new Map([[3, 1]]));
    // Its own snapshots are taken, though the former database's fence stood at 900.
    expect(await fresh.push([{ entityKey: 'u-kept', shard: 3, epoch: 1, seq: 1, state: { by: 'new' } }], now)).toBe(1);
    expect(await fresh.read(['u-kept'])).toEqual([{ epoch: 1, seq: 1, state: { by: 'new' } }]);
    await fresh.close();

    // The same database again: nothing to take over, nothing said.
    const third = captured();
    const again = await open('db-new', third.log);
    expect(third.lines.filter((line) => line.includes('served another database'))).toHaveLength(0);
    expect(await again.read(['u-kept'])).toEqual([{ epoch: 1, seq: 1, state: { by: 'new' } }]);
    await again.close();
  });
});

describe('a replica whose Redis is not there', () => {
  it('pushes nothing and reads no copy, at once, without throwing, and counts and logs it', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const captured = pino({ level: 'warn' }, sink);
    const replica = await openReplica('redis://127.0.0.1:1', { prefix: 'none:', incarnation: 'db1', ttlMs: 1000, readTimeoutMs: 1000 }, captured);
    try {
      const started = Date.now();
      expect(await replica.push([{ entityKey: 'u', shard: 0, epoch: 1, seq: 1, state: {} }], started)).toBeNull();
      expect(await replica.read(['u', 'v'])).toEqual([null, null]);
      await replica.fence(new Map([[0, 1]]));
      expect(Date.now() - started).toBeLessThan(500);
      expect(replica.stats).toMatchObject({ pushFailures: 1, readFailures: 1, snapshotsPushed: 0 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(replica.up).toBe(false);
      // One line when it stopped working, however many times it failed since.
      expect(lines.filter((line) => line.includes('replica cache is out of use'))).toHaveLength(1);
    } finally {
      await replica.close();
    }
  });
});

async function waitReady(replica: RedisReplica): Promise<void> {
  for (let i = 0; i < 100 && !replica.up; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!replica.up) throw new Error(`Redis at ${REDIS_URL} did not answer`);
}
