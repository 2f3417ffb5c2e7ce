import { beforeAll, describe, expect, it } from 'vitest';
import { type ActivityTouches, Actor } from './actor.js';
import { CapacityError, NotFoundError, OwnerUnavailableError } from './errors.js';
import { initHashing } from './hash.js';
import { ActorRuntime, ALL_WRITTEN } from './runtime.js';
import type { Shard } from './shard.js';

class Counter extends Actor {
  count = 0;
  bump(): void {
    this.count++;
    this.markDirty();
  }
  override persistedState(): unknown {
    return { count: this.count };
  }
}

const counters = async (key: string, shard: Shard) => ({ actor: new Counter(key, shard), fenceEpoch: shard.epoch });

/** An actor with last-use times to write, as a user with a session has. */
class Toucher extends Actor {
  private used = false;
  private due = false;
  use(): void {
    this.used = true;
  }
  override persistedState(): unknown {
    return null;
  }
  override activityDueNow(): void {
    if (!this.used || this.due) return;
    this.due = true;
    this.markActivity();
  }
  protected override hasPendingActivity(): boolean {
    return this.due;
  }
  override takeActivity(): ActivityTouches | null {
    if (!this.due) return null;
    this.due = false;
    this.used = false;
    return { sessions: [{ id: this.key, at: new Date(0) }], keys: [] };
  }
}
const touchers = async (key: string, shard: Shard) => ({ actor: new Toucher(key, shard), fenceEpoch: shard.epoch });

function runtime(options: Partial<ConstructorParameters<typeof ActorRuntime>[0]> = {}): ActorRuntime {
  const rt = new ActorRuntime({ maxActors: 1000, idleMs: 60_000, negativeTtlMs: 1000, negativeMax: 10, ...options });
  for (const shard of rt.shards) shard.status = 'owned';
  return rt;
}

beforeAll(() => initHashing());

describe('ActorRuntime', () => {
  it('checks the lease again after a load: one that returns after the lease lapsed decides nothing', async () => {
    const rt = runtime();
    let lease = true;
    rt.mayDecide = () => lease;
    let finish: () => void = () => {};
    const slow = (key: string, shard: Shard) =>
      new Promise<{ actor: Counter; fenceEpoch: number }>((resolve) => {
        finish = () => resolve({ actor: new Counter(key, shard), fenceEpoch: shard.epoch });
      });
    const first = rt.get('slow', 0, slow, 'counter');
    const second = rt.get('slow', 0, slow, 'counter');
    // The load takes longer than half a lease: the lease lapses meanwhile (another node may own the shard by now).
    lease = false;
    finish();
    await expect(first).rejects.toThrow(OwnerUnavailableError);
    await expect(second).rejects.toThrow(OwnerUnavailableError);
    // The loaded actor stays; once the lease is valid again it is used, not loaded twice.
    lease = true;
    expect(rt.get('slow', 0, slow, 'counter')).toBeInstanceOf(Counter);
  });

  it('checks the shard again after a load: one released meanwhile decides nothing', async () => {
    const rt = runtime();
    let finish: () => void = () => {};
    const slow = (key: string, shard: Shard) =>
      new Promise<{ actor: Counter; fenceEpoch: number }>((resolve) => {
        finish = () => resolve({ actor: new Counter(key, shard), fenceEpoch: shard.epoch });
      });
    const pending = rt.get('moving', 0, slow, 'counter');
    rt.releaseShard(rt.shardFor('moving'));
    finish();
    await expect(pending).rejects.toThrow(OwnerUnavailableError);
  });

  it('activates an actor once however many callers ask at the same time', async () => {
    const rt = runtime();
    let loads = 0;
    const load = async (key: string, shard: Shard) => {
      loads++;
      await new Promise((resolve) => setTimeout(resolve, 10));
      return { actor: new Counter(key, shard), fenceEpoch: shard.epoch };
    };
    const actors = await Promise.all(Array.from({ length: 20 }, () => rt.get('user-1', 0, load, 'user')));
    expect(loads).toBe(1);
    expect(new Set(actors).size).toBe(1);
    expect(rt.get('user-1', 1, load, 'user')).toBe(actors[0]); // active: returned synchronously
  });

  it('remembers unknown keys for the negative-cache TTL', async () => {
    const rt = runtime();
    let loads = 0;
    const load = async (_key: string, shard: Shard) => {
      loads++;
      return { actor: null, fenceEpoch: shard.epoch };
    };
    await expect(rt.get('ghost', 0, load, 'user')).rejects.toBeInstanceOf(NotFoundError);
    await expect(rt.get('ghost', 500, load, 'user')).rejects.toBeInstanceOf(NotFoundError);
    expect(loads).toBe(1);
    await expect(rt.get('ghost', 1001, load, 'user')).rejects.toBeInstanceOf(NotFoundError);
    expect(loads).toBe(2);
  });

  it('evicts the least recently used clean actors past the cap, never dirty ones', async () => {
    const rt = runtime({ maxActors: 3 });
    const a = await rt.get('a', 1, counters, 'user');
    await rt.get('b', 2, counters, 'user');
    await rt.get('c', 3, counters, 'user');
    a.bump(); // dirty: must survive
    rt.get('a', 4, counters, 'user');
    // At the cap, an activation makes room by evicting the least recently used clean actor.
    await rt.get('d', 5, counters, 'user');
    expect(rt.size).toBe(3);
    expect(rt.isActive('b')).toBe(false);
    expect(rt.isActive('a')).toBe(true);
    expect(rt.stats.evictions).toBe(1);
  });

  it('goes at most 10 % past the cap while every actor is dirty, then refuses, and makes room once they are written', async () => {
    const rt = runtime({ maxActors: 10 });
    for (let i = 0; i < 10; i++) (await rt.get(`dirty-${i}`, 1, counters, 'user')).bump();
    let loads = 0;
    const counting = async (key: string, shard: Shard) => {
      loads++;
      return counters(key, shard);
    };
    (await rt.get('over', 2, counting, 'user')).bump(); // 11: within the overshoot
    await expect(rt.get('refused', 2, counting, 'user')).rejects.toBeInstanceOf(CapacityError);
    expect(loads).toBe(1); // refused before any query
    expect(rt.size).toBe(11);
    expect(rt.stats.refusedAtCapacity).toBe(1);
    // Once the flush has written them, the same activation evicts one and fits.
    rt.collectDirty(3).finish(ALL_WRITTEN);
    await expect(rt.get('refused', 4, counting, 'user')).resolves.toBeInstanceOf(Counter);
    expect(rt.size).toBe(11);
  });

  it('does not refuse at the cap for last-use times not yet written: it makes them due and writes them first', async () => {
    const rt = runtime({ maxActors: 10 });
    const users: Toucher[] = [];
    for (let i = 0; i < 10; i++) users.push((await rt.get(`used-${i}`, 1, touchers, 'user')) as Toucher);
    for (const user of users) user.use();
    await rt.get('newcomer', 2, counters, 'user'); // nothing clean to evict: the overshoot lets it in
    expect(users.filter((user) => user.dirty).length).toBeGreaterThan(0); // their uses are due at the next flush
    const flushed = rt.collectDirty(3);
    expect(flushed.activity.sessions.length).toBeGreaterThan(0);
    flushed.finish(ALL_WRITTEN);
    await rt.get('another', 4, counters, 'user'); // evicts a written one
    expect(rt.size).toBe(11);
    expect(rt.stats.refusedAtCapacity).toBe(0);
  });

  it('writes no row for an actor dropped while queued (its shard was lost)', async () => {
    const rt = runtime();
    const actor = await rt.get('doomed', 0, counters, 'user');
    actor.bump();
    rt.loseShard(actor.shard, 99);
    expect(rt.collectDirty(1).rows).toEqual([]);
  });

  it('looks at a bounded number of actors per sweep, and lets the rest go at the next ones', async () => {
    const rt = runtime({ idleMs: 100 });
    for (let i = 0; i < 50; i++) await rt.get(`idle-${i}`, 0, counters, 'user');
    expect(rt.sweep(5000, 20)).toBe(20);
    expect(rt.isActive('idle-0') || rt.isActive('idle-19')).toBe(false); // oldest first
    expect(rt.isActive('idle-20')).toBe(true);
    expect(rt.sweep(5000, 20)).toBe(20);
    expect(rt.sweep(5000, 20)).toBe(10);
    expect(rt.size).toBe(0);
    expect(rt.stats.passivations).toBe(50);
  });

  it('takes the dirty queue a slice at a time, in the order actors became dirty', async () => {
    const rt = runtime({});
    const actors: Counter[] = [];
    for (let i = 0; i < 7; i++) actors.push(await rt.get(`slice-${i}`, 0, counters, 'user'));
    for (const actor of actors) actor.bump();
    const first = rt.collectDirty(1, 3);
    expect(first.rows.map((row) => row.entityKey)).toEqual(['slice-0', 'slice-1', 'slice-2']);
    expect(rt.dirtyCount).toBe(4);
    expect(rt.unwrittenCount).toBe(7); // the slice in flight is still unwritten
    first.finish(ALL_WRITTEN);
    expect(rt.unwrittenCount).toBe(4);
    actors[0]!.bump(); // dirty again: behind the rest
    const second = rt.collectDirty(1, 5);
    expect(second.rows.map((row) => row.entityKey)).toEqual(['slice-3', 'slice-4', 'slice-5', 'slice-6', 'slice-0']);
    second.finish(ALL_WRITTEN);
    expect(rt.dirtyCount).toBe(0);
    expect(actors.some((actor) => actor.dirty)).toBe(false);
  });

  it('passivates idle clean actors while dirty ones wait, however the flush fares', async () => {
    const rt = runtime({ idleMs: 100 });
    const clean = await rt.get('clean', 0, counters, 'user');
    const dirty = await rt.get('dirty', 0, counters, 'user');
    dirty.bump();
    const failed = rt.collectDirty(10);
    failed.finish({ retry: new Set([0]), activityFailed: false }); // the database was away
    expect(rt.unwrittenCount).toBe(1); // queued again, counted once
    expect(rt.sweep(5000)).toBe(1);
    expect(rt.isActive(clean.key)).toBe(false);
    expect(rt.isActive(dirty.key)).toBe(true);
    expect(dirty.dirty).toBe(true);
  });

  it('drops every actor of a lost shard, and only those', async () => {
    const rt = runtime();
    const shard = rt.shardFor('k-0');
    const keys = [...Array(20_000).keys()].map((i) => `k-${i}`);
    const mine = keys.filter((key) => rt.shardFor(key) === shard).slice(0, 5);
    const others = keys.filter((key) => rt.shardFor(key) !== shard).slice(0, 5);
    for (const key of [...mine, ...others]) await rt.get(key, 0, counters, 'user');
    rt.loseShard(shard, 1);
    for (const key of mine) expect(rt.isActive(key)).toBe(false);
    for (const key of others) expect(rt.isActive(key)).toBe(true);
    expect([...shard.actors()]).toEqual([]);
    // Served again, and filled again: the list starts over.
    shard.status = 'owned';
    const again = await rt.get(mine[2]!, 1, counters, 'user');
    expect([...shard.actors()]).toEqual([again]);
    expect(rt.releaseShard(shard)).toBe(1);
    expect(shard.holds(again)).toBe(false);
  });

  it('lists a shard’s actors through the actors: any of them leaves the list whole', () => {
    const rt = runtime();
    const shard = rt.shards[0]!;
    const actors = ['a', 'b', 'c', 'd', 'e'].map((key) => new Counter(key, shard));
    for (const actor of actors) shard.add(actor);
    const [a, b, c, d, e] = actors as [Counter, Counter, Counter, Counter, Counter];
    shard.add(e); // twice: nothing changes (the first of the list would otherwise link to itself)
    shard.add(new Counter('other', rt.shards[1]!)); // another shard's: refused
    expect([...shard.actors()]).toEqual([e, d, c, b, a]);
    shard.remove(e); // the first
    shard.remove(c); // a middle one
    shard.remove(a); // the last
    shard.remove(a); // again: nothing
    expect([...shard.actors()]).toEqual([d, b]);
    expect(actors.map((actor) => shard.holds(actor))).toEqual([false, true, false, true, false]);
    // Removing each actor as it is returned still visits them all.
    for (const actor of shard.actors()) shard.remove(actor);
    expect([...shard.actors()]).toEqual([]);
    expect(shard.holds(b) || shard.holds(d)).toBe(false);
  });

  it('gives up the whole shard when a load reads a newer fence epoch', async () => {
    const rt = runtime();
    const shard = rt.shardFor('victim');
    shard.epoch = 3;
    const neighbour = await rt.get('victim', 0, async (key, s) => ({ actor: new Counter(key, s), fenceEpoch: 3 }), 'user');
    const lost: [number, number | null][] = [];
    rt.onShardLost = (s, epoch) => lost.push([s.index, epoch]);
    // Another entity of the same shard, loaded after a second node claimed the shard at epoch 4.
    const other = [...Array(10_000).keys()].map((i) => `other-${i}`).find((key) => rt.shardFor(key) === shard)!;
    await expect(rt.get(other, 1, async (key, s) => ({ actor: new Counter(key, s), fenceEpoch: 4 }), 'user')).rejects.toBeInstanceOf(OwnerUnavailableError);
    expect(shard.status).toBe('lost');
    expect(lost).toEqual([[shard.index, 4]]);
    expect(rt.isActive(neighbour.key)).toBe(false);
    expect(() => rt.get('victim', 2, counters, 'user')).toThrow(OwnerUnavailableError);
  });

  it('passivates idle actors once they are flushed', async () => {
    const rt = runtime({ idleMs: 100 });
    const actor = await rt.get('x', 0, counters, 'user');
    actor.bump();
    expect(rt.sweep(1000)).toBe(0); // dirty
    const collected = rt.collectDirty(1000);
    expect(collected.rows).toEqual([
      { entityKey: 'x', shard: actor.shard.index, epoch: 0, seq: 1, state: { count: 1 }, expiresAt: null, usage: null, liveUsage: null },
    ]);
    collected.finish(ALL_WRITTEN);
    expect(rt.sweep(2000)).toBe(1);
    expect(rt.size).toBe(0);
  });

  it('retries a failed flush, and re-queues changes made while a flush was in flight', async () => {
    const rt = runtime();
    const actor = await rt.get('y', 0, counters, 'user');
    actor.bump();
    const failed = rt.collectDirty(0);
    failed.finish({ retry: new Set([0]), activityFailed: false });
    const retry = rt.collectDirty(0);
    expect(retry.rows).toHaveLength(1);
    actor.bump(); // during the write
    retry.finish(ALL_WRITTEN);
    expect(actor.dirty).toBe(true);
    expect(rt.collectDirty(0).rows[0]!.state).toEqual({ count: 2 });
  });
});

describe('the replica queue', () => {
  it('collects each changed actor once per push, with its sequence, and only while the node may decide', async () => {
    const rt = runtime();
    rt.keepReplica();
    const a = (await rt.get('a', 0, counters, 'counter')) as Counter;
    const b = (await rt.get('b', 0, counters, 'counter')) as Counter;
    a.bump();
    a.bump();
    b.bump();
    expect(rt.collectReplica(0).rows.map((row) => [row.entityKey, row.seq, row.state])).toEqual([
      ['a', 2, { count: 2 }],
      ['b', 1, { count: 1 }],
    ]);
    // Nothing changed since: nothing to push. The flush's queue is its own.
    expect(rt.collectReplica(0).rows).toEqual([]);
    expect(rt.dirtyCount).toBe(2);
    b.bump();
    rt.mayDecide = () => false;
    expect(rt.collectReplica(0).rows).toEqual([]);
  });

  it('queues the actors of a push that did not reach Redis again, each once, as they are by then', async () => {
    const rt = runtime();
    rt.keepReplica();
    const a = (await rt.get('a', 0, counters, 'counter')) as Counter;
    const b = (await rt.get('b', 0, counters, 'counter')) as Counter;
    a.bump();
    b.bump();
    const failed = rt.collectReplica(0);
    expect(failed.rows.map((row) => row.entityKey)).toEqual(['a', 'b']);
    expect(rt.replicaPending).toBe(0);
    // `a` changes while the push is out; then the push fails.
    a.bump();
    failed.requeue();
    expect(rt.replicaPending).toBe(2);
    expect(rt.collectReplica(0).rows.map((row) => [row.entityKey, row.state])).toEqual([
      ['a', { count: 2 }],
      ['b', { count: 1 }],
    ]);
    // A push that went through is not queued again.
    expect(rt.collectReplica(0).rows).toEqual([]);
  });

  it('queues nothing when no replica is kept', async () => {
    const rt = runtime();
    const a = (await rt.get('a', 0, counters, 'counter')) as Counter;
    for (let i = 0; i < 3; i++) a.bump();
    rt.keepReplica();
    expect(rt.collectReplica(0).rows).toEqual([]);
  });

  it('continues the sequence of the loaded copy, and writes behind a copy newer than its row', async () => {
    const rt = runtime();
    const fromRow = async (key: string, shard: Shard) => ({ actor: new Counter(key, shard), fenceEpoch: shard.epoch, seq: 7 });
    const fromReplica = async (key: string, shard: Shard) => ({ actor: new Counter(key, shard), fenceEpoch: shard.epoch, seq: 9, unwritten: true });
    const clean = (await rt.get('clean', 0, fromRow, 'counter')) as Counter;
    expect(clean.dirty).toBe(false);
    const ahead = (await rt.get('ahead', 0, fromReplica, 'counter')) as Counter;
    expect(ahead.dirty).toBe(true);
    clean.bump();
    expect(rt.collectDirty(0).rows.map((row) => [row.entityKey, row.seq])).toEqual([
      ['ahead', 9],
      ['clean', 8],
    ]);
  });
});
