/**
 * Tiers marked `fail_open`: a consume whose owner cannot be reached (its shard is not served
 * here, or, in a cluster, its owner does not answer) is allowed rather than refused, says so
 * with `degraded`, and is counted. Strict tiers, and users whose tier cannot be learnt, get
 * the owner's error (503 with Retry-After).
 *
 * Only a credential this node has seen its owner accept in the last minute qualifies: the
 * owner alone holds the user's sessions, keys and blocked flag, so what the edge can check
 * on its own (a token's signature, a key's MAC, which covers `userId_keyId` and not the
 * secret) proves nothing about a revoked session, a deleted key, a made-up secret or a
 * blocked user. The routers record a credential when the owner answers a request made with
 * it (`verified`), unless the owner knows the user's tier to be strict (a node of 300,000
 * strict users keeps no record for any of them), on their asynchronous paths only: the
 * synchronous fast path (`tryUser`) stays free of bookkeeping, so a node records what it
 * forwards, and what it decides itself only when it has to load the user or run a slower
 * operation. A credential is known by kind: a session by its id, an API key by the hash of
 * the whole key presented (its id and secret: a made-up secret never matches a verified one;
 * and only a consume records a key, so a key without the consume scope never qualifies), a
 * platform service (the NATS API) by the user. Recording costs a few Map operations and no allocation once a user is known.
 *
 * When an owner commits a session revocation, a key deletion, a block or a tier change, it
 * announces it (revocations.ts) and every node forgets the user's credentials at once
 * (`forget`). A verification that was under way when the announcement arrived is not
 * recorded: its answer may predate the change. Everything else gets the strict answer.
 */
import { OwnerUnavailableError, type QuotaDecision, type TierRegistry, type UserRequest } from '../shards/index.js';

/** How long a user's tier, once read, is trusted for these decisions. */
const TIER_TTL_MS = 60_000;
const TIERS_KEPT = 10_000;
/** How long an owner's acceptance of a credential stands in for the owner. */
export const VERIFIED_TTL_MS = 60_000;
/** Users whose verified credentials are kept, at most; the least recently verified go first. */
const VERIFIED_USERS_KEPT = 100_000;
/** Past this many sessions or keys of one user, the stale ones are pruned as a new one is recorded. */
const CREDENTIALS_BEFORE_PRUNE = 16;
/** And past this many fresh ones (more than a user's live sessions or keys), all are. */
const CREDENTIALS_KEPT = 256;
/** A user verified again is moved to the end of the eviction order at most this often. */
const REORDER_MS = 1_000;
/** Users verified too long ago are looked for at most this often. */
const SWEEP_MS = 1_000;
/** Forgotten users remembered, so that a verification under way at the announcement is not recorded. */
const FORGOTTEN_KEPT = 10_000;

export interface FailOpenMetrics {
  degraded: { inc(labels: { operation: string }): void };
}

export interface FailOpenOptions {
  clock?: () => number;
  /** At most this many users' credentials are kept (VERIFIED_USERS_KEPT). */
  maxUsers?: number;
}

/**
 * Credentials of one kind the owner has accepted, each with when it last did. Most users
 * present one key or one session: it is kept inline, and a Map is made only for a second.
 * That saved 138 of the 319 bytes a verified user with one key cost (up to VERIFIED_USERS_KEPT
 * of them are kept).
 */
class Accepted {
  private id: string;
  private at: number;
  private more: Map<string, number> | null = null;

  constructor(id: string, now: number) {
    this.id = id;
    this.at = now;
  }

  get(id: string): number | undefined {
    return id === this.id ? this.at : this.more?.get(id);
  }

  record(id: string, now: number): void {
    if (id === this.id) {
      this.at = now;
    } else if (this.more === null && now - this.at >= VERIFIED_TTL_MS) {
      // The inline one is stale: the new one takes its place.
      this.id = id;
      this.at = now;
    } else {
      this.more ??= new Map();
      record(this.more, id, now);
    }
  }
}

/** The credentials of one user the owner has accepted, each with when it last did. */
interface Verified {
  /** The latest acceptance of any of them. */
  latest: number;
  /** When the user was last put at the end of the eviction order. */
  placed: number;
  /** The platform service acting for the user (0: never). */
  service: number;
  /** By session id. */
  sessions: Accepted | null;
  /** By the hash of the whole key (user id, key id and secret). */
  keys: Accepted | null;
}

export class FailOpen {
  private readonly known = new Map<string, { tier: string | null; until: number }>();
  /** By user, least recently verified first. */
  private readonly verifiedUsers = new Map<string, Verified>();
  /** Announcements heard so far; a stamp is this count when a request began. */
  private forgets = 0;
  /** The stamp of each user's latest announcement, oldest first, at most FORGOTTEN_KEPT. */
  private readonly forgotten = new Map<string, number>();
  /** The highest stamp dropped from `forgotten`: a request begun before it cannot be told apart. */
  private forgottenBefore = 0;
  private readonly clock: () => number;
  private readonly maxUsers: number;
  /** When `makeRoom` next looks for users verified too long ago. */
  private sweepAt = Number.NEGATIVE_INFINITY;
  /**
   * A live iterator over `verifiedUsers`, kept between evictions at the cap: every entry it
   * has passed was evicted. A fresh iterator would start at the table's first slot and step
   * over every entry deleted since the table last compacted (V8 keeps them until it grows
   * or shrinks), which made each eviction cost time in proportion to the evictions before.
   */
  private eviction: Iterator<string> | null = null;

  constructor(
    private readonly tiers: TierRegistry,
    private readonly findTier: (userId: string) => Promise<string | null>,
    private readonly metrics: FailOpenMetrics,
    options: FailOpenOptions = {},
  ) {
    this.clock = options.clock ?? Date.now;
    this.maxUsers = options.maxUsers ?? VERIFIED_USERS_KEPT;
  }

  /** Taken when a request begins, given back to `verified` when its owner has answered. */
  stamp(): number {
    return this.forgets;
  }

  /**
   * The owner answered `request` (it accepted the credential): the credential qualifies for
   * a minute. Not recorded when the user's credentials were forgotten since `stamp`.
   */
  verified(request: UserRequest, stamp: number): void {
    const { userId, credential } = request;
    // The admin and service tokens never consume for a user; a key accepted for another
    // operation may lack the consume scope.
    if (credential.kind === 'trusted' || (credential.kind === 'key' && request.op !== 'quota.consume')) return;
    if (stamp !== this.forgets && this.forgottenSince(userId, stamp)) return;
    const now = this.clock();
    let user = this.verifiedUsers.get(userId);
    if (user === undefined) {
      this.makeRoom(now);
      user = { latest: now, placed: now, service: 0, sessions: null, keys: null };
      this.verifiedUsers.set(ownCopy(userId), user);
    } else if (now - user.placed >= REORDER_MS) {
      // To the end: the least recently verified user stays first, to go first.
      this.verifiedUsers.delete(userId);
      this.verifiedUsers.set(ownCopy(userId), user);
      user.placed = now;
    }
    user.latest = now;
    if (credential.kind === 'service') {
      user.service = now;
    } else if (credential.kind === 'session') {
      if (user.sessions === null) user.sessions = new Accepted(credential.sessionId, now);
      else user.sessions.record(credential.sessionId, now);
    } else if (user.keys === null) {
      user.keys = new Accepted(credential.hash, now);
    } else {
      user.keys.record(credential.hash, now);
    }
  }

  /** The owner announced a revocation, key deletion, block or tier change: the user's credentials no longer qualify. */
  forget(userId: string): void {
    this.verifiedUsers.delete(userId);
    this.known.delete(userId);
    this.forgets++;
    this.forgotten.delete(userId);
    this.forgotten.set(userId, this.forgets);
    if (this.forgotten.size > FORGOTTEN_KEPT) {
      const [oldest, at] = this.forgotten.entries().next().value!;
      this.forgotten.delete(oldest);
      this.forgottenBefore = at;
    }
  }

  /** Forgets every user: announcements may have been missed (NATS reconnected). */
  forgetAll(): void {
    this.verifiedUsers.clear();
    this.eviction = null;
    this.known.clear();
    this.forgets++;
    this.forgotten.clear();
    this.forgottenBefore = this.forgets;
  }

  /** Users whose credentials are kept now (for tests and metrics). */
  get size(): number {
    return this.verifiedUsers.size;
  }

  /** The degraded answer for a consume that failed with `error`, or `error` again. */
  async consume(error: unknown, request: UserRequest<'quota.consume'>): Promise<QuotaDecision> {
    if (!(error instanceof OwnerUnavailableError)) throw error;
    // Checked before the tier: a credential never seen verified costs no database read.
    if (!this.qualifies(request)) throw error;
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

  /** Whether the owner accepted the request's credential in the last VERIFIED_TTL_MS. */
  private qualifies(request: UserRequest): boolean {
    const user = this.verifiedUsers.get(request.userId);
    if (user === undefined) return false;
    const { credential } = request;
    let at: number | undefined;
    if (credential.kind === 'service') at = user.service === 0 ? undefined : user.service;
    else if (credential.kind === 'session') at = user.sessions?.get(credential.sessionId);
    else if (credential.kind === 'key') at = user.keys?.get(credential.hash);
    return at !== undefined && this.clock() - at < VERIFIED_TTL_MS;
  }

  /** Whether the user was forgotten after `stamp` was taken (or that cannot be told any more). */
  private forgottenSince(userId: string, stamp: number): boolean {
    if (stamp < this.forgottenBefore) return true;
    const at = this.forgotten.get(userId);
    return at !== undefined && at > stamp;
  }

  /**
   * Drops users verified too long ago from the front (at most once every SWEEP_MS, for the
   * same reason as `eviction`), then the least recently verified ones while at the cap.
   */
  private makeRoom(now: number): void {
    if (now >= this.sweepAt) {
      this.sweepAt = now + SWEEP_MS;
      for (const [userId, user] of this.verifiedUsers) {
        if (now - user.latest < VERIFIED_TTL_MS) break;
        this.verifiedUsers.delete(userId);
      }
    }
    while (this.verifiedUsers.size >= this.maxUsers) {
      let next = this.eviction?.next();
      if (next === undefined || next.done === true) {
        this.eviction = this.verifiedUsers.keys();
        next = this.eviction.next();
      }
      if (next.done === true) return;
      this.verifiedUsers.delete(next.value);
    }
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

/**
 * `text` as a string of its own. A user id parsed from an API key is a slice of the request's
 * header, and a slice keeps the whole header alive: as a key of `verifiedUsers` it cost 144
 * bytes more per user. (A user the owner accepted exists, so its id is well-formed UTF-8.)
 */
function ownCopy(text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8');
}

/** Records `id` as accepted `now`, pruning the stale ones first when there are many. */
function record(credentials: Map<string, number>, id: string, now: number): void {
  if (credentials.size >= CREDENTIALS_BEFORE_PRUNE && !credentials.has(id)) {
    for (const [other, at] of credentials) if (now - at >= VERIFIED_TTL_MS) credentials.delete(other);
    if (credentials.size >= CREDENTIALS_KEPT) credentials.clear();
  }
  credentials.set(id, now);
}
