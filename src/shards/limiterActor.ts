/**
 * A generic keyed limiter: an actor per key (`limiter:<key>`) holding counters for whatever
 * limits the caller applies. It serves `/v1/limiter/check`, the per-IP limits of the
 * `anonymous` tier on the unauthenticated routes, and the login-failure counters.
 */
import { Actor } from './actor.js';
import {
  compileLimits,
  consume,
  type LimitSet,
  migrateQuotaState,
  newQuotaState,
  type QuotaState,
  quotaStateFromJSON,
  quotaStateToJSON,
  snapshot,
} from './quota/index.js';
import type { Limit, LimitState } from './quota/limits.js';
import type { Shard } from './shard.js';

export const LIMITER_PREFIX = 'limiter:';

export interface LimiterDecision {
  allowed: boolean;
  limits: LimitState[];
  retryAfterMs: number;
}

export class LimiterActor extends Actor {
  private set: LimitSet;
  private quota: QuotaState;

  constructor(key: string, shard: Shard, set: LimitSet, persisted: unknown | null) {
    super(key, shard);
    this.set = set;
    this.quota = persisted === null ? newQuotaState(set) : quotaStateFromJSON(set, persisted);
  }

  /** Charges `cost` against every limit of `set`, all or nothing. */
  check(set: LimitSet, now: number, cost: number): LimiterDecision {
    this.adopt(set);
    const result = consume(set, this.quota, now, { cost, resource: 'default' });
    if (result.state !== this.quota) {
      this.quota = result.state;
      this.markDirty();
    }
    return { allowed: result.allowed, limits: result.limits, retryAfterMs: result.retryAfterMs };
  }

  /** The counters without charging: used to refuse before doing expensive work. */
  peek(set: LimitSet, now: number): LimitState[] {
    this.adopt(set);
    return snapshot(set, this.quota, now);
  }

  private adopt(set: LimitSet): void {
    if (set === this.set) return;
    this.quota = migrateQuotaState(this.set, this.quota, set);
    this.set = set;
  }

  override persistedState(): unknown {
    return quotaStateToJSON(this.set, this.quota);
  }
}

/**
 * Compiled sets for the generic limiter's `(limit, window_ms)` pairs, shared by every key
 * that uses the same pair. Bounded: callers choose the pairs, so they must not grow memory.
 */
export class LimitSetCache {
  private readonly sets = new Map<string, LimitSet>();
  constructor(private readonly max = 1024) {}

  window(limit: number, windowMs: number): LimitSet {
    return this.get(`w:${limit}:${windowMs}`, () => [{ name: 'limit', kind: 'window', limit, window_ms: windowMs }]);
  }

  get(id: string, limits: () => Limit[]): LimitSet {
    let set = this.sets.get(id);
    if (set === undefined) {
      if (this.sets.size >= this.max) this.sets.delete(this.sets.keys().next().value!);
      set = compileLimits(limits());
      this.sets.set(id, set);
    }
    return set;
  }
}
