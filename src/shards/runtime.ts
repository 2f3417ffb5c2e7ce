/**
 * The actor runtime of one node: which shards it serves, the actors active in them, and the
 * bookkeeping that keeps memory bounded and Postgres current.
 *
 * - Single activation: concurrent requests for an actor that is loading await one promise.
 * - A node-wide LRU list orders actors by last use; idle ones are passivated and, past
 *   `maxActors`, the least recently used clean ones are evicted. Dirty actors are never
 *   dropped: they wait for the write-behind flush.
 * - A short negative cache remembers keys that loaded nothing, so a bot with made-up ids
 *   or keys costs one query per key per TTL, not one per request.
 */
import type { ActivityTouches, Actor, PersistedState } from './actor.js';
import { NotFoundError, OwnerUnavailableError } from './errors.js';
import { SHARD_COUNT, shardOf } from './hash.js';
import { Shard } from './shard.js';

export interface RuntimeOptions {
  maxActors: number;
  idleMs: number;
  negativeTtlMs: number;
  negativeMax: number;
}

export type ActorLoader<A extends Actor> = (key: string, shard: Shard) => Promise<A | null>;

export interface DirtyCollection {
  rows: PersistedState[];
  activity: ActivityTouches;
  /** Call once the rows are durable: marks each actor clean up to the collected version. */
  commit(): void;
  /** Call when the write failed: everything collected is retried by the next flush. */
  fail(): void;
}

export class ActorRuntime {
  readonly shards: readonly Shard[];
  private oldest: Actor | null = null;
  private newest: Actor | null = null;
  /**
   * Every active actor by key, whatever its shard: the hot path finds an actor with one map
   * lookup instead of hashing its key to a shard first. Kept beside the shards' own maps,
   * which moves and flushes go through.
   */
  private readonly active = new Map<string, Actor>();
  private readonly activating = new Map<string, Promise<Actor | null>>();
  private readonly unknown = new Map<string, number>();
  private dirtyQueue: Actor[] = [];
  private unwrittenActivity: ActivityTouches = { sessions: [], keys: [] };
  readonly stats = { activations: 0, evictions: 0, passivations: 0, negativeHits: 0 };

  constructor(readonly options: RuntimeOptions) {
    this.shards = Array.from({ length: SHARD_COUNT }, (_, index) => new Shard(index, this));
  }

  get size(): number {
    return this.active.size;
  }

  shardFor(entityKey: string): Shard {
    return this.shards[shardOf(entityKey)]!;
  }

  /**
   * The active actor for `key` or, after loading it once however many callers ask at the
   * same time, the loaded one. Throws NotFoundError when the loader finds nothing.
   */
  get<A extends Actor>(key: string, now: number, load: ActorLoader<A>, what: string): A | Promise<A> {
    const active = this.active.get(key);
    const shard = active === undefined ? this.shardFor(key) : active.shard;
    if (!shard.serving) throw new OwnerUnavailableError(`shard ${shard.index} is not served by this node`);
    if (active !== undefined) {
      this.touch(active, now);
      return active as A;
    }
    return this.activate(key, shard, now, load, what);
  }

  /** The actor for `key` if it is active here, without loading it; touches it. */
  peek(key: string, now: number): Actor | undefined {
    const active = this.active.get(key);
    if (active === undefined || !active.shard.serving) return undefined;
    this.touch(active, now);
    return active;
  }

  private async activate<A extends Actor>(key: string, shard: Shard, now: number, load: ActorLoader<A>, what: string): Promise<A> {
    const until = this.unknown.get(key);
    if (until !== undefined) {
      if (until > now) {
        this.stats.negativeHits++;
        throw new NotFoundError(what);
      }
      this.unknown.delete(key);
    }
    let pending = this.activating.get(key);
    if (pending === undefined) {
      pending = this.load(key, shard, now, load);
      this.activating.set(key, pending);
    }
    const actor = await pending;
    if (actor === null) throw new NotFoundError(what);
    return actor as A;
  }

  private async load<A extends Actor>(key: string, shard: Shard, now: number, load: ActorLoader<A>): Promise<A | null> {
    try {
      const actor = await load(key, shard);
      if (actor === null) {
        this.rememberUnknown(key, now);
        return null;
      }
      // The shard may have been released while the load was in flight.
      if (!shard.serving) throw new OwnerUnavailableError(`shard ${shard.index} moved while activating`);
      // Keyed by the actor's own id, not the caller's string: that may be a slice of a
      // token or API key, which the map would otherwise keep alive.
      shard.actors.set(actor.key, actor);
      this.active.set(actor.key, actor);
      this.stats.activations++;
      this.touch(actor, now);
      return actor;
    } finally {
      this.activating.delete(key);
    }
  }

  private rememberUnknown(key: string, now: number): void {
    if (this.unknown.size >= this.options.negativeMax) {
      // Insertion order is expiry order (one TTL for all), so the first entries go first.
      const excess = this.unknown.size - this.options.negativeMax + 1;
      let dropped = 0;
      for (const stale of this.unknown.keys()) {
        this.unknown.delete(stale);
        if (++dropped >= excess) break;
      }
    }
    this.unknown.set(key, now + this.options.negativeTtlMs);
  }

  private touch(actor: Actor, now: number): void {
    actor.lastUsedSecond = Math.floor(now / 1000);
    if (this.newest === actor) return;
    this.unlink(actor);
    actor.older = this.newest;
    if (this.newest !== null) this.newest.newer = actor;
    this.newest = actor;
    if (this.oldest === null) this.oldest = actor;
  }

  private unlink(actor: Actor): void {
    if (actor.older !== null) actor.older.newer = actor.newer;
    if (actor.newer !== null) actor.newer.older = actor.older;
    if (this.oldest === actor) this.oldest = actor.newer;
    if (this.newest === actor) this.newest = actor.older;
    actor.older = null;
    actor.newer = null;
  }

  /** Drops an actor from memory. The caller has made sure nothing of it is unwritten. */
  private drop(actor: Actor): void {
    if (actor.shard.actors.get(actor.key) !== actor) return;
    actor.shard.actors.delete(actor.key);
    this.active.delete(actor.key);
    this.unlink(actor);
  }

  enqueueDirty(actor: Actor): void {
    actor.queued = true;
    this.dirtyQueue.push(actor);
  }

  get dirtyCount(): number {
    return this.dirtyQueue.length;
  }

  /** Everything written behind since the last collection, with the epochs of its shards. */
  collectDirty(): DirtyCollection {
    const queue = this.dirtyQueue;
    this.dirtyQueue = [];
    const rows: PersistedState[] = [];
    const activity = this.unwrittenActivity;
    this.unwrittenActivity = { sessions: [], keys: [] };
    const versions = new Array<number>(queue.length);
    for (let i = 0; i < queue.length; i++) {
      const actor = queue[i]!;
      actor.queued = false;
      versions[i] = actor.version;
      if (actor.version !== actor.flushedVersion) {
        rows.push({ entityKey: actor.key, shard: actor.shard.index, epoch: actor.shard.epoch, state: actor.persistedState() });
      }
      const touches = actor.takeActivity();
      if (touches !== null) {
        activity.sessions.push(...touches.sessions);
        activity.keys.push(...touches.keys);
      }
    }
    return {
      rows,
      activity,
      commit: () => {
        for (let i = 0; i < queue.length; i++) {
          const actor = queue[i]!;
          if (versions[i]! > actor.flushedVersion) actor.flushedVersion = versions[i]!;
        }
      },
      fail: () => {
        for (const actor of queue) {
          if (!actor.queued && actor.shard.actors.get(actor.key) === actor) this.enqueueDirty(actor);
        }
        this.unwrittenActivity.sessions.push(...activity.sessions);
        this.unwrittenActivity.keys.push(...activity.keys);
      },
    };
  }

  /**
   * Passivates actors idle for longer than `idleMs`, then evicts the least recently used
   * clean actors while the node holds more than `maxActors`. Returns how many were dropped.
   */
  sweep(now: number): number {
    let dropped = 0;
    let actor = this.oldest;
    const idleBefore = Math.floor((now - this.options.idleMs) / 1000);
    while (actor !== null) {
      const next = actor.newer;
      const idle = actor.lastUsedSecond < idleBefore;
      const overCap = this.active.size > this.options.maxActors;
      if (!idle && !overCap) break;
      // Uses not yet written make the actor dirty: it stays until the next flush has them.
      actor.activityDueNow();
      if (!actor.dirty && !actor.busy) {
        this.drop(actor);
        dropped++;
        if (idle) this.stats.passivations++;
        else this.stats.evictions++;
      }
      actor = next;
    }
    return dropped;
  }

  /** Makes every active actor's unwritten uses due at the next flush (before a shutdown). */
  activityDueNow(): void {
    for (const actor of this.active.values()) actor.activityDueNow();
  }

  /** Drops every actor of a shard (after a handoff flushed it, or when the fence refused it). */
  releaseShard(shard: Shard): number {
    let dropped = 0;
    for (const actor of [...shard.actors.values()]) {
      this.drop(actor);
      dropped++;
    }
    return dropped;
  }

  /** Drops one actor whose state Postgres refused (a newer owner holds its shard). */
  dropFenced(entityKey: string): void {
    const actor = this.active.get(entityKey);
    if (actor !== undefined) this.drop(actor);
  }
}
