/**
 * A generic keyed limiter: an actor per key holding counters for whatever limits the caller
 * applies. It serves `/v1/limiter/check`, the per-address limits of the `anonymous` tier on
 * the unauthenticated routes, and the login-attempt counters (see limiterService.ts for the
 * namespaces that keep those apart).
 *
 * Its state matters only until its windows have passed: `expiresAt` says when, and the
 * database deletes the row from then on, so keys chosen by callers are not kept for good.
 */
import { Actor } from './actor.js';
import {
  compileLimits,
  consume,
  type LimitSet,
  migrateQuotaState,
  newQuotaState,
  type QuotaState,
  quietAt,
  quotaStateFromJSON,
  quotaStateToJSON,
  release,
  reserve,
  settle,
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
    this.update(result.state);
    return { allowed: result.allowed, limits: result.limits, retryAfterMs: result.retryAfterMs };
  }

  /** Charges `cost` as a hold that `settle` turns into what it really cost (a refund included). */
  reserve(set: LimitSet, now: number, hold: { id: string; cost: number; ttlMs: number }): LimiterDecision {
    this.adopt(set);
    const result = reserve(set, this.quota, now, { ...hold, resource: 'default' });
    this.update(result.state);
    return { allowed: result.allowed, limits: result.limits, retryAfterMs: result.retryAfterMs };
  }

  /** Settles a hold at `actual` (0 releases it); false when it is gone (expired, or settled). */
  settle(set: LimitSet, now: number, id: string, actual: number): boolean {
    this.adopt(set);
    const result = actual === 0 ? release(set, this.quota, now, id) : settle(set, this.quota, now, { id, actual });
    this.update(result.state);
    return result.found;
  }

  /** The counters without charging: used to refuse before doing expensive work. */
  peek(set: LimitSet, now: number): LimitState[] {
    this.adopt(set);
    return snapshot(set, this.quota, now);
  }

  private update(state: QuotaState): void {
    if (state === this.quota) return;
    this.quota = state;
    this.markDirty();
  }

  private adopt(set: LimitSet): void {
    if (set === this.set) return;
    this.quota = migrateQuotaState(this.set, this.quota, set);
    this.set = set;
  }

  override persistedState(): unknown {
    return quotaStateToJSON(this.set, this.quota);
  }

  override expiresAt(now: number): number {
    return quietAt(this.set, this.quota, now);
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
