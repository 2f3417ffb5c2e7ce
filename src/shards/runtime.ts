/**
 * The actor runtime of one node: which shards it serves, the actors active in them, and the
 * bookkeeping that keeps memory bounded and Postgres current.
 *
 * - Single activation: concurrent requests for an actor that is loading await one promise.
 * - A node-wide LRU list orders actors by last use; idle ones are passivated and, past
 *   `maxActors`, the least recently used clean ones are evicted. Dirty actors are never
 *   dropped: they wait for the write-behind flush. An activation at the cap evicts a clean
 *   actor to make room; when it finds none it may still go up to 10 % over the cap (the
 *   next flush makes room), and past that it is refused with `CapacityError`: when the
 *   database refuses writes, the heap does not grow without bound.
 * - A short negative cache remembers keys that loaded nothing, so a bot with made-up ids
 *   or keys costs one query per key per TTL, not one per request.
 * - The fence: every load reads its shard's epoch in the same statement. A newer epoch
 *   than the one this node serves under means another node has taken the shard over, so
 *   the whole shard is given up (`loseShard`), not just the one actor: serving any of its
 *   actors again would decide on stale state.
 */
import type { ActivityTouches, Actor, PersistedState } from './actor.js';
import { CapacityError, NotFoundError, OwnerUnavailableError } from './errors.js';
import { SHARD_COUNT, shardOf } from './hash.js';
import { Shard } from './shard.js';

export interface RuntimeOptions {
  maxActors: number;
  idleMs: number;
  negativeTtlMs: number;
  negativeMax: number;
}

/** What a load found, and the epoch its shard's fence held when it was read. */
export interface Loaded<A extends Actor> {
  actor: A | null;
  /** Null when the shard has no fence row (no node ever claimed it). */
  fenceEpoch: number | null;
  /** The sequence of the state copy the actor was built from; 0 or absent: none. */
  seq?: number;
  /** The copy came from the replica and is newer than Postgres's row: it is to be written there. */
  unwritten?: boolean;
}

export type ActorLoader<A extends Actor> = (key: string, shard: Shard) => Promise<Loaded<A>>;

/** What became of the rows of a collection once the flusher tried them. */
export interface FlushOutcome {
  /** Indexes into `rows` that were not written and must be tried again. */
  retry: ReadonlySet<number>;
  /** The activity touches were not written: they are tried again with the next collection. */
  activityFailed: boolean;
}

export interface DirtyCollection {
  rows: PersistedState[];
  activity: ActivityTouches;
  /**
   * Call once the write is over: actors whose rows were written are marked clean up to the
   * collected version; the rest are queued again. (Rows refused by the fence need nothing:
   * their shards are lost, with their actors.)
   */
  finish(outcome: FlushOutcome): void;
}

/** What one replica push takes: the rows, and a way to queue their actors again if it fails. */
export interface ReplicaBatch {
  rows: PersistedState[];
  requeue(): void;
}

/** How many of the least recently used actors an activation looks through for one to evict. */
const EVICTION_SCAN = 32;
/** How many actors one sweep looks at, at most (about 5 ms of work). */
const SWEEP_SCAN = 20_000;
/** Actors one replica push takes at most (a few milliseconds of serialising); the rest wait for the next. */
const REPLICA_SLICE = 10_000;
/** How far past `maxActors` activations may go while dirty actors wait for their flush. */
const OVERSHOOT = 0.1;
/** The outcome of a flush that wrote everything it collected. */
export const ALL_WRITTEN: FlushOutcome = Object.freeze({ retry: new Set<number>(), activityFailed: false });

export class ActorRuntime {
  readonly shards: readonly Shard[];
  private oldest: Actor | null = null;
  private newest: Actor | null = null;
  /**
   * Every active actor by key, whatever its shard: the hot path finds an actor with one map
   * lookup instead of hashing its key to a shard first. Each shard also lists its own
   * actors (shard.ts), which moves and flushes go through.
   */
  private readonly active = new Map<string, Actor>();
  private readonly activating = new Map<string, Promise<Actor | null>>();
  private readonly unknown = new Map<string, number>();
  /** Actors with something to write, in the order they became dirty; taken from `dirtyHead` on. */
  private dirtyQueue: Actor[] = [];
  private dirtyHead = 0;
  /** Actors a flush has taken off the queue and not yet settled (written, or queued again). */
  private flushing = 0;
  private unwrittenActivity: ActivityTouches = { sessions: [], keys: [] };
  /** Actors changed since the last replica push, when a replica is kept (`replicating`). */
  private replicaQueue: Actor[] = [];
  private replicating = false;
  /** `decisions`: quota decisions (consumes and reservations, admitted or refused) its users made here, as owner. */
  readonly stats = { activations: 0, evictions: 0, passivations: 0, negativeHits: 0, refusedAtCapacity: 0, decisions: 0 };
  /**
   * Whether this node may decide at all now. In a cluster, only while its lease is valid: a
   * node that could not renew it for half a lease (frozen, cut off) must stop deciding
   * before another node can have taken its shards over.
   */
  mayDecide: () => boolean = () => true;
  /** Called when the fence shows that another node has taken a shard over. */
  onShardLost: (shard: Shard, newerEpoch: number | null) => void = () => {};

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
    if (!this.mayDecide()) throw new OwnerUnavailableError('this node’s cluster lease has lapsed');
    if (active !== undefined) {
      this.touch(active, now);
      return active as A;
    }
    return this.activate(key, shard, now, load, what);
  }

  /** Whether an actor for `key` is in memory here (serving or not). */
  isActive(key: string): boolean {
    return this.active.has(key);
  }

  /** The actor for `key` if it is in memory here (serving or not), without touching it. */
  find(key: string): Actor | undefined {
    return this.active.get(key);
  }

  /** The actor for `key` if it is active here, without loading it; touches it. */
  peek(key: string, now: number): Actor | undefined {
    const active = this.active.get(key);
    if (active === undefined || !active.shard.serving || !this.mayDecide()) return undefined;
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
      this.makeRoom();
      pending = this.load(key, shard, now, load);
      this.activating.set(key, pending);
    }
    const actor = await pending;
    if (actor === null) throw new NotFoundError(what);
    // The lease and the shard are checked again after the load: one that took more than half
    // a lease may return after another node has taken the shard over and begun deciding.
    if (!actor.shard.serving) throw new OwnerUnavailableError(`shard ${actor.shard.index} moved while activating`);
    if (!this.mayDecide()) throw new OwnerUnavailableError('this node’s cluster lease lapsed while activating');
    return actor as A;
  }

  /**
   * Makes room for one more actor at `maxActors` (loads in flight count: each will add one):
   * evicts the least recently used actor that has nothing unwritten. An actor whose last-use
   * times are not yet written is made due for the next flush, not dropped. With nothing to
   * evict, the node may go OVERSHOOT past the cap until flushes make room again; beyond that,
   * CapacityError.
   */
  private makeRoom(): void {
    const size = this.active.size + this.activating.size;
    const { maxActors } = this.options;
    if (size < maxActors) return;
    let actor = this.oldest;
    for (let scanned = 0; actor !== null && scanned < EVICTION_SCAN; scanned++) {
      const next = actor.newer;
      actor.activityDueNow();
      if (!actor.dirty && !actor.busy) {
        this.drop(actor);
        this.stats.evictions++;
        return;
      }
      actor = next;
    }
    if (size < maxActors + Math.ceil(maxActors * OVERSHOOT)) return;
    this.stats.refusedAtCapacity++;
    throw new CapacityError();
  }

  private async load<A extends Actor>(key: string, shard: Shard, now: number, load: ActorLoader<A>): Promise<A | null> {
    const epoch = shard.epoch;
    try {
      const { actor, fenceEpoch, seq, unwritten } = await load(key, shard);
      // The shard may have been released or lost while the load was in flight.
      if (!shard.serving || shard.epoch !== epoch) throw new OwnerUnavailableError(`shard ${shard.index} moved while activating`);
      if (fenceEpoch !== epoch) {
        this.loseShard(shard, fenceEpoch);
        throw new OwnerUnavailableError(`shard ${shard.index} is owned by another node`);
      }
      if (actor === null) {
        this.rememberUnknown(key, now);
        return null;
      }
      if (seq !== undefined && seq > 0) {
        actor.restoreVersion(seq, unwritten !== true);
        // Newer than its row: written behind under this node's epoch, so Postgres has it again.
        if (unwritten === true && !actor.queued) this.enqueueDirty(actor);
      }
      // Keyed by the actor's own id, not the caller's string: that may be a slice of a
      // token or API key, which the map would otherwise keep alive.
      shard.add(actor);
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
    if (!actor.shard.holds(actor)) return;
    actor.shard.remove(actor);
    this.active.delete(actor.key);
    this.unlink(actor);
  }

  enqueueDirty(actor: Actor): void {
    actor.queued = true;
    this.dirtyQueue.push(actor);
  }

  /** From now on, changed actors are queued for the replica too (`collectReplica`). Call before serving. */
  keepReplica(): void {
    this.replicating = true;
  }

  /** Without a replica the flag stays set for good, so `markDirty` calls this once per actor. */
  enqueueReplica(actor: Actor): void {
    actor.replicaQueued = true;
    if (this.replicating) this.replicaQueue.push(actor);
  }

  /**
   * The state of every actor changed since the last call, as it is now, for the replica
   * cache. If the push does not reach Redis, `requeue()` queues those actors again for the
   * next one; the write-behind flush writes them either way.
   */
  collectReplica(now: number, limit = REPLICA_SLICE): ReplicaBatch {
    const queue = this.replicaQueue.length <= limit ? this.replicaQueue : this.replicaQueue.slice(0, limit);
    this.replicaQueue = queue === this.replicaQueue ? [] : this.replicaQueue.slice(limit);
    const rows: PersistedState[] = [];
    const taken: { actor: Actor; before: number }[] = [];
    // A node whose lease has lapsed pushes nothing: another may own its shards by now.
    const deciding = this.mayDecide();
    for (const actor of queue) {
      actor.replicaQueued = false;
      if (!deciding || !actor.shard.holds(actor) || !actor.shard.serving) continue;
      if (actor.version === actor.replicatedVersion) continue;
      try {
        rows.push(stateOf(actor, now));
      } catch {
        // State that does not serialise: the flush quarantines and logs it; the replica skips it.
        continue;
      }
      taken.push({ actor, before: actor.replicatedVersion });
      actor.replicatedVersion = actor.version;
    }
    return {
      rows,
      requeue: () => {
        for (const { actor, before } of taken) {
          actor.replicatedVersion = before;
          if (!actor.replicaQueued) this.enqueueReplica(actor);
        }
      },
    };
  }

  /** Actors changed since the last replica push, waiting for the next. */
  get replicaPending(): number {
    return this.replicaQueue.length;
  }

  /** Actors queued for the write-behind flush. */
  get dirtyCount(): number {
    return this.dirtyQueue.length - this.dirtyHead;
  }

  /**
   * Actors with changes not yet in the database: those queued, and those a flush in
   * progress holds. The gauge operators watch: it does not dip while a slice is in flight.
   */
  get unwrittenCount(): number {
    return this.dirtyCount + this.flushing;
  }

  /**
   * What is to be written behind of the first `limit` queued actors (all of them by default),
   * with the epochs of their shards, and the activity touches not yet written. The flusher
   * takes the queue in slices of this, so that no collection holds the event loop for long.
   *
   * `visit` is given each row as soon as it is made, with its index in `rows`: the flusher
   * serialises it there and drops its state's object tree, which then lives for microseconds.
   * Built for the whole slice first, the trees had lived long enough for the young-generation
   * collector to promote them to the old generation, where most of a flush's garbage went.
   */
  collectDirty(now: number, limit = Number.POSITIVE_INFINITY, visit?: (row: PersistedState, index: number) => void): DirtyCollection {
    const queue = this.takeQueued(limit);
    const rows: PersistedState[] = [];
    const rowActors: Actor[] = [];
    const versions: number[] = [];
    const activity = this.unwrittenActivity;
    this.unwrittenActivity = { sessions: [], keys: [] };
    for (const actor of queue) {
      actor.queued = false;
      // Dropped since it was queued: its shard was lost (stale state, refused by the fence)
      // or released after a handoff flushed it.
      if (!actor.shard.holds(actor)) continue;
      if (actor.version !== actor.flushedVersion) {
        const row = stateOf(actor, now);
        rows.push(row);
        rowActors.push(actor);
        versions.push(actor.version);
        visit?.(row, rows.length - 1);
      }
      const touches = actor.takeActivity();
      if (touches !== null) {
        activity.sessions.push(...touches.sessions);
        activity.keys.push(...touches.keys);
      }
    }
    this.flushing += rowActors.length;
    return {
      rows,
      activity,
      finish: ({ retry, activityFailed }) => {
        this.flushing -= rowActors.length;
        for (let i = 0; i < rowActors.length; i++) {
          const actor = rowActors[i]!;
          if (retry.has(i)) {
            if (!actor.queued && actor.shard.holds(actor)) this.enqueueDirty(actor);
          } else {
            if (versions[i]! > actor.flushedVersion) actor.flushedVersion = versions[i]!;
            actor.written(rows[i]!);
          }
        }
        if (activityFailed) {
          this.unwrittenActivity.sessions.push(...activity.sessions);
          this.unwrittenActivity.keys.push(...activity.keys);
        }
      },
    };
  }

  /** The first `limit` queued actors, taken off the queue. */
  private takeQueued(limit: number): Actor[] {
    const queue = this.dirtyQueue;
    const end = Math.min(queue.length, this.dirtyHead + limit);
    if (this.dirtyHead === 0 && end === queue.length) {
      this.dirtyQueue = [];
      return queue;
    }
    const taken = queue.slice(this.dirtyHead, end);
    if (end === queue.length) {
      this.dirtyQueue = [];
      this.dirtyHead = 0;
    } else if (end * 2 >= queue.length) {
      // Most of the array is taken: what is left moves down, so the queue does not grow for
      // as long as actors keep becoming dirty during flushes.
      this.dirtyQueue = queue.slice(end);
      this.dirtyHead = 0;
    } else {
      this.dirtyHead = end;
    }
    return taken;
  }

  /**
   * Passivates actors idle for longer than `idleMs`, then evicts the least recently used
   * clean actors while the node holds more than `maxActors`. Looks at no more than `limit`
   * actors, oldest first, so that a node where a whole cold pass goes idle at once lets them
   * go over a few sweeps instead of holding the event loop for all of them. Returns how many
   * were dropped.
   */
  sweep(now: number, limit = SWEEP_SCAN): number {
    let dropped = 0;
    let actor = this.oldest;
    const idleBefore = Math.floor((now - this.options.idleMs) / 1000);
    for (let scanned = 0; actor !== null && scanned < limit; scanned++) {
      const next: Actor | null = actor.newer;
      const idle = actor.lastUsedSecond < idleBefore;
      const overCap = this.active.size > this.options.maxActors;
      if (!idle && !overCap) break;
      // Uses not yet written make the actor dirty: it stays until the next flush has them.
      actor.activityDueNow();
      if (idle) actor.leaving();
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

  /**
   * By shard, the actors of `shards` with a change not yet in the database (state, or a use).
   * Empty for a shard whose actors are all written: only then may it be handed over or
   * released without losing anything.
   */
  unwrittenIn(shards: Iterable<Shard>): Map<number, string[]> {
    const unwritten = new Map<number, string[]>();
    for (const shard of shards) {
      for (const actor of shard.actors()) {
        if (!actor.dirty) continue;
        const keys = unwritten.get(shard.index);
        if (keys === undefined) unwritten.set(shard.index, [actor.key]);
        else keys.push(actor.key);
      }
    }
    return unwritten;
  }

  /** Stops serving a shard and drops its actors (after a handoff flushed it, or at shutdown). */
  releaseShard(shard: Shard): number {
    shard.status = 'not_owned';
    return this.dropActorsOf(shard);
  }

  /**
   * The fence shows a newer epoch for `shard` (a load read it, or a write was refused):
   * another node owns it now. This node stops serving it and drops its actors, whose state
   * is stale; it serves the shard again only after claiming it anew.
   */
  loseShard(shard: Shard, newerEpoch: number | null): void {
    if (shard.status === 'lost') return;
    shard.status = 'lost';
    this.dropActorsOf(shard);
    this.onShardLost(shard, newerEpoch);
  }

  /**
   * Compares the epochs of the shards this node serves with the fence's (shard → epoch, as
   * read from the database) and gives up every shard whose fence has moved past it. Only a
   * newer epoch counts: an older one was read before a claim of this node's committed.
   * Returns how many were lost.
   */
  checkFences(fence: ReadonlyMap<number, number>): number {
    let lost = 0;
    for (const shard of this.shards) {
      const epoch = fence.get(shard.index);
      if (!shard.serving || epoch === undefined || epoch <= shard.epoch) continue;
      this.loseShard(shard, epoch);
      lost++;
    }
    return lost;
  }

  private dropActorsOf(shard: Shard): number {
    let dropped = 0;
    for (const actor of shard.actors()) {
      this.drop(actor);
      dropped++;
    }
    return dropped;
  }
}

/** An actor's state as it is now, stamped with its shard's epoch and its own version. */
function stateOf(actor: Actor, now: number): PersistedState {
  return {
    entityKey: actor.key,
    shard: actor.shard.index,
    epoch: actor.shard.epoch,
    seq: actor.version,
    state: actor.persistedState(),
    expiresAt: actor.expiresAt(now),
    usage: actor.pendingUsage(),
    liveUsage: actor.liveUsage(),
  };
}
