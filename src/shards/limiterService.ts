/**
 * Operations on generic limiter actors. A request names a namespace, a key and the limits to
 * apply; the owner of `limiter:<namespace>:<key>` decides.
 *
 * The namespace is part of the entity key, so the keys a service sends to
 * `/v1/limiter/check` (any string it likes) can never name the node's own counters: the
 * per-address `anonymous` tier and the login-attempt counters.
 */
import { InvalidRequestError } from './errors.js';
import { LIMITER_PREFIX, LimiterActor, type LimiterDecision, LimitSetCache } from './limiterActor.js';
import type { UserStore } from './ports.js';
import type { LimitSet } from './quota/index.js';
import type { ActorRuntime, Loaded } from './runtime.js';
import type { Shard } from './shard.js';
import type { TierRegistry } from './tiers.js';

/**
 * - `service`: keys of `/v1/limiter/check`.
 * - `anon`: client addresses, for the `anonymous` tier on the routes that need no credentials.
 * - `login-email`, `login-ip`: login attempts per account (a keyed hash of the email) and
 *   per client address.
 */
export type LimiterNamespace = 'service' | 'anon' | 'login-email' | 'login-ip';

export type LimiterSpec =
  /** At most `limit` in any `windowMs`. */
  | { kind: 'window'; limit: number; windowMs: number }
  /** Every limit of a tier (the `anonymous` tier, per client address). */
  | { kind: 'tier'; tier: string };

interface LimiterTarget {
  namespace: LimiterNamespace;
  key: string;
  spec: LimiterSpec;
}

export type LimiterRequest = LimiterTarget &
  (
    | /** Charges `cost`; 0 reads the counters without charging. */
    { op: 'check'; cost: number }
    /** Charges `cost` as a hold named `id`, released by itself after `ttlMs`. */
    | { op: 'reserve'; id: string; cost: number; ttlMs: number }
    /** Turns hold `id` into `actual` (0 refunds it); `allowed: false` when the hold was gone (expired). */
    | { op: 'settle'; id: string; actual: number }
  );

export class LimiterService {
  private readonly sets = new LimitSetCache();

  constructor(
    private readonly runtime: ActorRuntime,
    private readonly store: Pick<UserStore, 'loadState'>,
    private readonly tiers: TierRegistry,
  ) {}

  static entityKey(namespace: LimiterNamespace, key: string): string {
    return `${LIMITER_PREFIX}${namespace}:${key}`;
  }

  async perform(request: LimiterRequest, now: number): Promise<LimiterDecision> {
    const set = this.resolve(request.spec);
    const load = async (key: string, shard: Shard): Promise<Loaded<LimiterActor>> => {
      const { found, fenceEpoch, seq, unwritten } = await this.store.loadState(key, shard.index);
      return { actor: new LimiterActor(key, shard, set, found), fenceEpoch, seq, unwritten };
    };
    const found = this.runtime.get(LimiterService.entityKey(request.namespace, request.key), now, load, 'limiter');
    const actor = found instanceof Promise ? await found : found;
    switch (request.op) {
      case 'check': {
        if (request.cost > 0) return actor.check(set, now, request.cost);
        const limits = actor.peek(set, now);
        const exhausted = limits.find((l) => l.remaining === 0);
        return { allowed: exhausted === undefined, limits, retryAfterMs: exhausted === undefined ? 0 : Math.max(0, exhausted.reset_at - now) };
      }
      case 'reserve':
        return actor.reserve(set, now, request);
      case 'settle': {
        const found = actor.settle(set, now, request.id, request.actual);
        return { allowed: found, limits: actor.peek(set, now), retryAfterMs: 0 };
      }
    }
  }

  private resolve(spec: LimiterSpec): LimitSet {
    if (spec.kind === 'window') return this.sets.window(spec.limit, spec.windowMs);
    const tier = this.tiers.get(spec.tier);
    if (tier === undefined) throw new InvalidRequestError(`tier "${spec.tier}" does not exist`);
    return tier.set;
  }
}
