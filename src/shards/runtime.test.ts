import { beforeAll, describe, expect, it } from 'vitest';
import { Actor } from './actor.js';
import { NotFoundError } from './errors.js';
import { initHashing } from './hash.js';
import { ActorRuntime } from './runtime.js';
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

function runtime(options: Partial<ConstructorParameters<typeof ActorRuntime>[0]> = {}): ActorRuntime {
  const rt = new ActorRuntime({ maxActors: 1000, idleMs: 60_000, negativeTtlMs: 1000, negativeMax: 10, ...options });
  for (const shard of rt.shards) shard.status = 'owned';
  return rt;
}

beforeAll(() => initHashing());

describe('ActorRuntime', () => {
  it('activates an actor once however many callers ask at the same time', async () => {
    const rt = runtime();
    let loads = 0;
    const load = async (key: string, shard: Shard) => {
      loads++;
      await new Promise((resolve) => setTimeout(resolve, 10));
      return new Counter(key, shard);
    };
    const actors = await Promise.all(Array.from({ length: 20 }, () => rt.get('user-1', 0, load, 'user')));
    expect(loads).toBe(1);
    expect(new Set(actors).size).toBe(1);
    expect(rt.get('user-1', 1, load, 'user')).toBe(actors[0]); // active: returned synchronously
  });

  it('remembers unknown keys for the negative-cache TTL', async () => {
    const rt = runtime();
    let loads = 0;
    const load = async () => {
      loads++;
      return null;
    };
    await expect(rt.get('ghost', 0, load, 'user')).rejects.toBeInstanceOf(NotFoundError);
    await expect(rt.get('ghost', 500, load, 'user')).rejects.toBeInstanceOf(NotFoundError);
    expect(loads).toBe(1);
    await expect(rt.get('ghost', 1001, load, 'user')).rejects.toBeInstanceOf(NotFoundError);
    expect(loads).toBe(2);
  });

  it('evicts the least recently used clean actors past the cap, never dirty ones', async () => {
    const rt = runtime({ maxActors: 3 });
    const load = async (key: string, shard: Shard) => new Counter(key, shard);
    const a = await rt.get('a', 1, load, 'user');
    await rt.get('b', 2, load, 'user');
    await rt.get('c', 3, load, 'user');
    await rt.get('d', 4, load, 'user');
    a.bump(); // dirty: must survive
    rt.get('a', 5, load, 'user');
    expect(rt.sweep(6)).toBe(1);
    expect(rt.size).toBe(3);
    expect(rt.shardFor('b').actors.has('b')).toBe(false);
    expect(rt.shardFor('a').actors.has('a')).toBe(true);
  });

  it('passivates idle actors once they are flushed', async () => {
    const rt = runtime({ idleMs: 100 });
    const actor = await rt.get('x', 0, async (key, shard) => new Counter(key, shard), 'user');
    actor.bump();
    expect(rt.sweep(1000)).toBe(0); // dirty
    const collected = rt.collectDirty();
    expect(collected.rows).toEqual([{ entityKey: 'x', shard: actor.shard.index, epoch: 0, state: { count: 1 } }]);
    collected.commit();
    expect(rt.sweep(2000)).toBe(1);
    expect(rt.size).toBe(0);
  });

  it('retries a failed flush, and re-queues changes made while a flush was in flight', async () => {
    const rt = runtime();
    const actor = await rt.get('y', 0, async (key, shard) => new Counter(key, shard), 'user');
    actor.bump();
    const failed = rt.collectDirty();
    failed.fail();
    const retry = rt.collectDirty();
    expect(retry.rows).toHaveLength(1);
    actor.bump(); // during the write
    retry.commit();
    expect(actor.dirty).toBe(true);
    expect(rt.collectDirty().rows[0]!.state).toEqual({ count: 2 });
  });
});
