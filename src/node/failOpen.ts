/**
 * Tiers marked `fail_open`: a consume whose owner cannot be reached (its shard is not served
 * here, or, in a cluster, its owner does not answer) is allowed rather than refused, says so
 * with `degraded`, and is counted. Strict tiers, and users whose tier cannot be learnt, get
 * the owner's error (503 with Retry-After).
 *
 * Only credentials the edge has checked on its own qualify: a session token (its signature)
 * and an API key with a verified MAC. A key without one could be made up, and only its owner
 * could tell.
 */
import { OwnerUnavailableError, type QuotaDecision, type TierRegistry, type UserRequest } from '../shards/index.js';

/** How long a user's tier, once read, is trusted for these decisions. */
const TIER_TTL_MS = 60_000;
const TIERS_KEPT = 10_000;

export interface FailOpenMetrics {
  degraded: { inc(labels: { operation: string }): void };
}

export class FailOpen {
  private readonly known = new Map<string, { tier: string | null; until: number }>();

  constructor(
    private readonly tiers: TierRegistry,
    private readonly findTier: (userId: string) => Promise<string | null>,
    private readonly metrics: FailOpenMetrics,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The degraded answer for a consume that failed with `error`, or `error` again. */
  async consume(error: unknown, request: UserRequest<'quota.consume'>): Promise<QuotaDecision> {
    if (!(error instanceof OwnerUnavailableError)) throw error;
    const { credential } = request;
    if (credential.kind === 'key' && !credential.signed) throw error;
    let tier: string | null;
    try {
      tier = await this.tierOf(request.userId);
    } catch {
      // The tier cannot be learnt (the database is away too): the strict answer, the owner's error.
      throw error;
    }
    if (tier === null || this.tiers.get(tier)?.failOpen !== true) throw error;
    this.metrics.degraded.inc({ operation: 'consume' });
    return { allowed: true, limits: [], retryAfterMs: 0, exceedsCapacity: false, degraded: true };
  }

  private async tierOf(userId: string): Promise<string | null> {
    const now = this.clock();
    const cached = this.known.get(userId);
    if (cached !== undefined && cached.until > now) return cached.tier;
    const tier = await this.findTier(userId);
    if (this.known.size >= TIERS_KEPT) this.known.clear();
    this.known.set(userId, { tier, until: now + TIER_TTL_MS });
    return tier;
  }
}
