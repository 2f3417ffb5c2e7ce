/**
 * Operations on generic limiter actors. A request names the key and the limits to apply;
 * the owner of `limiter:<key>` decides.
 */
import { InvalidRequestError } from './errors.js';
import { LIMITER_PREFIX, LimiterActor, type LimiterDecision, LimitSetCache } from './limiterActor.js';
import type { UserStore } from './ports.js';
import type { LimitSet } from './quota/index.js';
import type { ActorRuntime } from './runtime.js';
import type { Shard } from './shard.js';
import type { TierRegistry } from './tiers.js';

export type LimiterSpec =
  /** The generic limiter: at most `limit` in any `windowMs`. */
  | { kind: 'window'; limit: number; windowMs: number }
  /** Every limit of a tier (the `anonymous` tier, per client address). */
  | { kind: 'tier'; tier: string };

export interface LimiterRequest {
  key: string;
  spec: LimiterSpec;
  /** 0 reads the counters without charging. */
  cost: number;
}

export class LimiterService {
  private readonly sets = new LimitSetCache();

  constructor(
    private readonly runtime: ActorRuntime,
    private readonly store: Pick<UserStore, 'loadState'>,
    private readonly tiers: TierRegistry,
  ) {}

  static entityKey(key: string): string {
    return LIMITER_PREFIX + key;
  }

  async check(request: LimiterRequest, now: number): Promise<LimiterDecision> {
    const set = this.resolve(request.spec);
    const entityKey = LimiterService.entityKey(request.key);
    const load = async (key: string, shard: Shard): Promise<LimiterActor> => new LimiterActor(key, shard, set, await this.store.loadState(key));
    const found = this.runtime.get(entityKey, now, load, 'limiter');
    const actor = found instanceof Promise ? await found : found;
    if (request.cost === 0) {
      const limits = actor.peek(set, now);
      const exhausted = limits.find((l) => l.remaining === 0);
      return { allowed: exhausted === undefined, limits, retryAfterMs: exhausted === undefined ? 0 : Math.max(0, exhausted.reset_at - now) };
    }
    return actor.check(set, now, request.cost);
  }

  private resolve(spec: LimiterSpec): LimitSet {
    if (spec.kind === 'window') return this.sets.window(spec.limit, spec.windowMs);
    const tier = this.tiers.get(spec.tier);
    if (tier === undefined) throw new InvalidRequestError(`tier "${spec.tier}" does not exist`);
    return tier.set;
  }
}
