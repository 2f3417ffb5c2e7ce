/**
 * What every entity actor shares with the runtime: its place in the node-wide LRU list, and
 * the version counters that say whether its memory is ahead of Postgres.
 *
 * An actor's synchronous methods are atomic (Node runs one thing at a time), so actors need
 * no locks. Changes that are written through to Postgres are serialised per actor by
 * `exclusive`, so two concurrent edits of one document cannot lose each other's update.
 */
import type { Shard } from './shard.js';
import type { LiveUsage, PendingUsage } from './usage.js';

export interface PersistedState {
  entityKey: string;
  shard: number;
  epoch: number;
  state: unknown;
  /** The actor's version when the state was taken: with `epoch`, orders the copies of one actor (absent: 0). */
  seq?: number;
  /** From then on the state decides like a fresh one, and its row may be deleted; null or absent: kept. */
  expiresAt?: number | null;
  /** Closed hours of usage to add to the history in the same statement (usage.ts); null or absent: none. */
  usage?: PendingUsage | null;
  /**
   * The current hour's usage counters, as well (they are also in `state`): stored where SQL
   * can read them (usage queries), while `state` is stored opaque. Null or absent: none.
   */
  liveUsage?: LiveUsage | null;
}

export abstract class Actor {
  /** Whole seconds: small integers are stored inline, milliseconds would be boxed. */
  lastUsedSecond = 0;
  /** Node-wide LRU list: `older` toward the eviction end. */
  older: Actor | null = null;
  newer: Actor | null = null;
  /** Its shard's list of actors in memory (shard.ts). */
  shardPrev: Actor | null = null;
  shardNext: Actor | null = null;
  /**
   * Bumped by every change of written-behind state, from the loaded copy's sequence on (see
   * `restoreVersion`); `flushedVersion` trails it, and so does `replicatedVersion`.
   */
  version = 0;
  flushedVersion = 0;
  /** The version last pushed to the replica cache (Redis). */
  replicatedVersion = 0;
  /** In the runtime's dirty queue, waiting for the next flush. */
  queued = false;
  /** In the runtime's replica queue; without a replica, set at the first change and never cleared. */
  replicaQueued = false;
  private tail: Promise<unknown> | null = null;

  constructor(
    readonly key: string,
    readonly shard: Shard,
  ) {}

  get dirty(): boolean {
    return this.version !== this.flushedVersion || this.hasPendingActivity();
  }

  /** Records a change to written-behind state. */
  protected markDirty(): void {
    this.version++;
    if (!this.queued) this.shard.runtime.enqueueDirty(this);
    if (!this.replicaQueued) this.shard.runtime.enqueueReplica(this);
  }

  /**
   * Continues the counters from the sequence of the copy the actor was loaded from, so that
   * every copy written from now on orders after it (a fresh actor starts at 0). A copy that
   * Postgres does not have (`written` false: it came from the replica) leaves the actor one
   * version ahead of its flush, so that the next flush writes it.
   */
  restoreVersion(seq: number, written = true): void {
    this.version += seq;
    this.flushedVersion += written ? seq : seq - 1;
    this.replicatedVersion += seq;
  }

  /** Records a session or key use, written behind with the state. */
  protected markActivity(): void {
    if (!this.queued) this.shard.runtime.enqueueDirty(this);
  }

  /** Runs `task` after every earlier exclusive task of this actor has settled. */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = (this.tail ?? Promise.resolve()).then(task, task);
    // The task's error goes to its caller through `run`; the queue only needs to know it settled.
    const tail = run.catch(() => undefined);
    this.tail = tail;
    void tail.then(() => {
      if (this.tail === tail) this.tail = null;
    });
    return run;
  }

  get busy(): boolean {
    return this.tail !== null;
  }

  /** Settles once every exclusive task started so far has settled (at once when there is none). */
  idle(): Promise<void> {
    return this.tail === null ? Promise.resolve() : this.tail.then(() => undefined);
  }

  /** The written-behind state as JSON, or null when this kind keeps none. */
  abstract persistedState(): unknown;
  /**
   * When the written-behind state stops mattering (a limiter's windows have all passed), so
   * that its row can be deleted; null for state that is kept for good.
   */
  expiresAt(_now: number): number | null {
    return null;
  }
  /** Session/key activity to write behind; cleared by the call. */
  takeActivity(): ActivityTouches | null {
    return null;
  }
  protected hasPendingActivity(): boolean {
    return false;
  }
  /**
   * Makes every use not yet written due at the next flush (uses are otherwise written at
   * most once a minute): called before the actor leaves memory or the node stops.
   */
  activityDueNow(): void {}
  /** Closed hours of usage the next write is to add to the history (usage.ts), or null. */
  pendingUsage(): PendingUsage | null {
    return null;
  }
  /** The current hour's usage counters, or null (see PersistedState.liveUsage). */
  liveUsage(): LiveUsage | null {
    return null;
  }
  /** `row` was written (with the usage it carried). */
  written(_row: PersistedState): void {}
  /** Called before the actor leaves memory for being idle: it may make itself dirty to write something first. */
  leaving(): void {}
}

export interface ActivityTouches {
  sessions: { id: string; at: Date }[];
  keys: { id: string; at: Date }[];
}
