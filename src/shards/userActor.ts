/**
 * A user as an actor: profile, preferences, logged-in sessions, API keys and quota state,
 * held in the memory of the one node that owns the user's shard.
 *
 * Every method is synchronous and so atomic. Quota state is written behind (`markDirty`);
 * profile, sessions and keys are written through by `UserService` before the actor's memory
 * changes, so memory never shows what Postgres has not committed.
 */
import { type ActivityTouches, Actor, type PersistedState } from './actor.js';
import { ForbiddenError, IdempotencyMismatchError, INVALID_API_KEY, InvalidSettlementError, NotFoundError, UnauthenticatedError } from './errors.js';
import { sameHash } from './ids.js';
import type { ApiKeyRecord, LoadedUser, SessionRecord } from './ports.js';
import {
  type Charge,
  chargeText,
  compileLimits,
  consume,
  DEFAULT_RESOURCE,
  type Decision,
  findIdempotent,
  type LimitSet,
  migrateQuotaState,
  newQuotaState,
  type QuotaState,
  type QuotaStateJSON,
  quotaStateFromJSON,
  quotaStateToJSON,
  release,
  rememberIdempotent,
  reserve,
  type Settlement,
  settle,
  settledCharge,
  snapshot,
} from './quota/index.js';
import type { Limit, LimitState } from './quota/limits.js';
import type { Shard } from './shard.js';
import { effectiveLimits, type TierRegistry } from './tiers.js';
import { hourOf, type LiveUsage, type PendingUsage, UsageCounters, type UsageJSON } from './usage.js';

export type Credential =
  /** A session token whose signature and expiry the edge has checked. */
  | { kind: 'session'; sessionId: string }
  /**
   * An API key, still to be checked against the owner's record. The edge checks the key's
   * MAC only before a load or a forward: an owner with the actor in memory is asked first,
   * and its hash check is what holds (credentials/apiKeys.ts).
   */
  | { kind: 'key'; keyId: string; hash: string }
  /**
   * A platform service acting for the user (the NATS API): nothing to check but the user
   * itself, so a blocked user is still refused.
   */
  | { kind: 'service' }
  /** The caller proved itself another way: the admin or service token. */
  | { kind: 'trusted' };

export interface Principal {
  via: Credential['kind'];
  sessionId?: string;
  /** The API key's id, when the caller used one. */
  keyId?: string;
  scopes?: readonly string[];
}

/** Usage is counted by the credential that asked: an API key's id, a session's id, else "". */
export function usageKeyOf(principal: Principal): string {
  return principal.keyId ?? principal.sessionId ?? '';
}

/** The stored form of a user's written-behind state: its quota state and its usage counters. */
type UserStateJSON = QuotaStateJSON & { usage?: UsageJSON };

export interface Session {
  id: string;
  deviceName: string | null;
  deviceType: string | null;
  ip: string | null;
  userAgent: string | null;
  createdAt: number;
  expiresAt: number;
  lastActiveAt: number;
  /** The last-use time Postgres holds (or is being sent), and whether a newer one is due. */
  writtenAt: number;
  touched: boolean;
}

export interface ApiKey {
  id: string;
  hash: string;
  name: string | null;
  scopes: readonly string[];
  createdAt: number;
  expiresAt: number | null;
  lastUsedAt: number | null;
  writtenAt: number;
  touched: boolean;
}

/** A cost and, optionally, amounts of named resources (see quota/charge.ts). */
export interface QuotaRequest extends Charge {
  cost: number;
  resource: string;
}

export interface QuotaDecision {
  allowed: boolean;
  limits: LimitState[];
  retryAfterMs: number;
  exceedsCapacity: boolean;
  /** When refused: the limit whose capacity is exceeded, else the first that refused. */
  denied?: string;
  /** This answer repeats the first one given for the same Idempotency-Key. */
  replayed?: boolean;
  /** Allowed without its owner (a `fail_open` tier whose owner could not be reached); `limits` is empty. */
  degraded?: boolean;
}

export const MAX_SESSIONS_PER_USER = 100;
/**
 * Last-use times of sessions and keys are exact in memory (listings show them) but written
 * behind at most once a minute each: a key used on every request would otherwise cost a row
 * update per flush. After a restart they may read up to this much early.
 */
export const ACTIVITY_WRITE_MS = 60_000;
export const MAX_KEYS_PER_USER = 100;
// Shared values, so that a hundred thousand actors do not each hold their own copy.
const NO_SCOPES: readonly string[] = Object.freeze([]);
const QUOTA_SCOPES: readonly string[] = Object.freeze(['quota']);
const NO_SESSIONS: Session[] = [];
const NO_KEYS: ApiKey[] = [];
const EMPTY_DOCUMENT = '{}';

function internScopes(scopes: readonly string[]): readonly string[] {
  if (scopes.length === 0) return NO_SCOPES;
  if (scopes.length === 1 && scopes[0] === 'quota') return QUOTA_SCOPES;
  return scopes;
}

export class UserActor extends Actor {
  email: string;
  name: string | null;
  tier: string;
  readonly createdAt: number;
  blocked: boolean;
  /** Kept as text: most requests never read it, and text is the compact form. */
  preferencesJson: string;
  overrides: readonly Limit[] | null;
  sessions: Session[];
  keys: ApiKey[];
  // The quota state's three parts, kept as fields rather than in a wrapper object: at
  // hundreds of thousands of actors, every object header counts.
  private cells: QuotaState['cells'];
  private holds: QuotaState['holds'];
  private idem: QuotaState['idem'];
  private limitSet: LimitSet;
  private limitsVersion: number;
  /** This hour's usage and closed hours not yet in the history (usage.ts); null while there are none. */
  private usage: UsageCounters | null;

  constructor(loaded: LoadedUser, shard: Shard, tiers: TierRegistry) {
    super(loaded.user.id, shard);
    const { user } = loaded;
    this.email = user.email;
    this.name = user.name;
    this.tier = user.tier;
    this.createdAt = user.createdAt.getTime();
    this.blocked = user.blocked;
    const document = JSON.stringify(user.preferences);
    this.preferencesJson = document === EMPTY_DOCUMENT ? EMPTY_DOCUMENT : document;
    this.overrides = user.overrides.length > 0 ? (user.overrides as Limit[]) : null;
    this.sessions = loaded.sessions.length === 0 ? NO_SESSIONS : loaded.sessions.map(toSession);
    this.keys = loaded.keys.length === 0 ? NO_KEYS : loaded.keys.map(toApiKey);
    this.limitSet = this.resolveLimits(tiers);
    this.limitsVersion = tiers.version;
    const quota = loaded.state === null ? newQuotaState(this.limitSet) : quotaStateFromJSON(this.limitSet, loaded.state);
    this.cells = quota.cells;
    this.holds = quota.holds;
    this.idem = quota.idem;
    this.usage = loaded.state === null ? null : UsageCounters.fromJSON((loaded.state as { usage?: unknown }).usage);
  }

  private get quota(): QuotaState {
    return { cells: this.cells, holds: this.holds, idem: this.idem };
  }

  private set quota(state: QuotaState) {
    this.cells = state.cells;
    this.holds = state.holds;
    this.idem = state.idem;
  }

  /**
   * Checks a credential against this user's live sessions and keys; records the use. A
   * blocked user is refused only once the credential holds: an API key reaches here with its
   * MAC unchecked (credentials/apiKeys.ts), and whoever made one up learns nothing of the user.
   */
  authenticate(credential: Credential, now: number): Principal {
    if (credential.kind === 'trusted') return TRUSTED;
    if (credential.kind === 'service') {
      if (this.blocked) throw new ForbiddenError(BLOCKED);
      return SERVICE;
    }
    if (credential.kind === 'session') {
      const session = this.findSession(credential.sessionId);
      if (session === undefined || session.expiresAt <= now) throw new UnauthenticatedError('the session has ended');
      if (this.blocked) throw new ForbiddenError(BLOCKED);
      session.lastActiveAt = now;
      this.noteUse(session, now);
      return { via: 'session', sessionId: session.id };
    }
    const key = this.findKey(credential.keyId);
    if (key === undefined || !sameHash(key.hash, credential.hash)) throw new UnauthenticatedError(INVALID_API_KEY);
    if (key.expiresAt !== null && key.expiresAt <= now) throw new UnauthenticatedError('the API key has expired');
    if (this.blocked) throw new ForbiddenError(BLOCKED);
    key.lastUsedAt = now;
    this.noteUse(key, now);
    return { via: 'key', keyId: key.id, scopes: key.scopes };
  }

  /** Schedules the write of a last-use time once Postgres's copy is ACTIVITY_WRITE_MS old. */
  private noteUse(used: Session | ApiKey, now: number): void {
    if (used.touched || now - used.writtenAt < ACTIVITY_WRITE_MS) return;
    used.touched = true;
    this.markActivity();
  }

  findKey(id: string): ApiKey | undefined {
    // A loop rather than `find`: this runs on every request made with a key.
    for (const key of this.keys) if (key.id === id) return key;
    return undefined;
  }

  findSession(id: string): Session | undefined {
    return this.sessions.find((session) => session.id === id);
  }

  // ---- quota -------------------------------------------------------------------------

  /**
   * `usageKey`: the credential the usage is counted under (`usageKeyOf`). A repeated
   * Idempotency-Key answers as the first time and counts nothing.
   */
  consume(tiers: TierRegistry, now: number, request: QuotaRequest, idempotencyKey?: string, usageKey = ''): QuotaDecision {
    const set = this.currentLimits(tiers);
    if (idempotencyKey !== undefined) {
      const fingerprint = chargeText(request);
      const earlier = findIdempotent(this.idem, now, idempotencyKey);
      if (earlier !== undefined) {
        if (earlier.fingerprint !== fingerprint) throw new IdempotencyMismatchError();
        return { ...(earlier.answer as QuotaDecision), replayed: true };
      }
      const decision = this.applyConsume(set, now, request, usageKey);
      if (decision.allowed) {
        this.idem = rememberIdempotent(this.idem, now, idempotencyKey, fingerprint, decision);
      }
      return decision;
    }
    return this.applyConsume(set, now, request, usageKey);
  }

  private applyConsume(set: LimitSet, now: number, request: QuotaRequest, usageKey: string): QuotaDecision {
    const current = this.quota;
    const result = consume(set, current, now, request);
    this.shard.runtime.stats.decisions++;
    // A refusal returns the same state unless expired holds were released meanwhile.
    this.keepQuota(current, result.state);
    if (result.allowed) this.countCharge(set, now, usageKey, request);
    else this.countRefusal(set, now, usageKey, request, result.denied);
    return decisionOf(result);
  }

  /** An admitted reservation counts nothing until it is settled; a refused one counts as denied. */
  reserve(tiers: TierRegistry, now: number, request: QuotaRequest & { id: string; ttlMs: number }, usageKey = ''): QuotaDecision & { expiresAt: number } {
    // The limits first: after a tier edit they migrate the state, which must be read after.
    const set = this.currentLimits(tiers);
    const current = this.quota;
    const result = reserve(set, current, now, request);
    this.shard.runtime.stats.decisions++;
    this.keepQuota(current, result.state);
    if (!result.allowed) this.countRefusal(set, now, usageKey, request, result.denied);
    return { ...decisionOf(result), expiresAt: now + request.ttlMs };
  }

  /** A settled hold counts what it settled at, now, as one request. */
  settle(tiers: TierRegistry, now: number, id: string, settlement: Settlement, usageKey = ''): LimitState[] {
    // The limits first: after a tier edit they migrate the state, which must be read after.
    const set = this.currentLimits(tiers);
    const current = this.quota;
    const result = settle(set, current, now, { ...settlement, id });
    // Not found or refused, the state differs only if expired holds were released meanwhile.
    this.keepQuota(current, result.state);
    if (!result.found) throw new NotFoundError('reservation');
    if (result.refused !== undefined) throw new InvalidSettlementError(result.refused);
    // The hold was live (an expired one is not found), so it is still in `current`.
    const hold = current.holds?.find((open) => open.id === id);
    const charge = hold === undefined ? undefined : settledCharge(hold, settlement);
    if (charge !== undefined && typeof charge !== 'string') this.countCharge(set, now, usageKey, charge, true);
    return result.limits;
  }

  // ---- usage ---------------------------------------------------------------------------

  /**
   * Counts an admitted charge: its cost to its resource, each amount to its own. `always`:
   * the cost's resource counts the request even at 0 (a hold settled at nothing was still a
   * request).
   */
  private countCharge(set: LimitSet, now: number, usageKey: string, charge: Charge, always = false): void {
    const usage = this.countersAt(now);
    if (charge.cost > 0 || always) usage.charged(now, usageKey, charge.resource ?? DEFAULT_RESOURCE, charge.cost, set);
    const amounts = charge.amounts;
    if (amounts != null) {
      for (const name in amounts) {
        const amount = amounts[name]!;
        if (amount > 0 && Object.hasOwn(amounts, name)) usage.charged(now, usageKey, name, amount, set);
      }
    }
    // No markDirty: an admitted charge changed the quota state, which marked the actor dirty.
  }

  /**
   * Counts a refusal, for the resource of the limit that refused (the request's own when that
   * limit names none). The count is written like any change: a user refused all through a
   * flush interval costs one row at its flush, as a user admitted all through it does.
   */
  private countRefusal(set: LimitSet, now: number, usageKey: string, request: Charge, denied: string | undefined): void {
    const limit = denied === undefined ? undefined : set.compiled.find((entry) => entry.limit.name === denied)?.limit;
    this.countersAt(now).refused(now, usageKey, limit?.resource ?? request.resource ?? DEFAULT_RESOURCE, set);
    this.markDirty();
  }

  private countersAt(now: number): UsageCounters {
    this.usage ??= new UsageCounters(hourOf(now), 0);
    return this.usage;
  }

  /**
   * Keeps the engine's next state, to be written behind, unless it is `current` itself.
   *
   * The engine never modifies its input, so its next cells are a copy of the actor's. Their
   * values go into the array the actor already holds, and the copy dies young: kept instead,
   * each decision's copy outlived the young generation (a user's next request comes seconds
   * later at 300,000 users) and was promoted, to become old-generation garbage at the next.
   * Nothing else holds the actor's array: states and answers take its values, not the array.
   */
  private keepQuota(current: QuotaState, next: QuotaState): void {
    if (next === current) return;
    const mine = this.cells as number[];
    if (next.cells !== mine && next.cells.length === mine.length) {
      for (let i = 0; i < mine.length; i++) mine[i] = next.cells[i]!;
      this.holds = next.holds;
      this.idem = next.idem;
    } else {
      this.quota = next;
    }
    this.markDirty();
  }

  release(tiers: TierRegistry, now: number, id: string): void {
    const result = release(this.currentLimits(tiers), this.quota, now, id);
    if (!result.found) throw new NotFoundError('reservation');
    this.quota = result.state;
    this.markDirty();
  }

  quotaSnapshot(tiers: TierRegistry, now: number): LimitState[] {
    return snapshot(this.currentLimits(tiers), this.quota, now);
  }

  /** The compiled limits, re-resolved when a tier was edited since they were compiled. */
  private currentLimits(tiers: TierRegistry): LimitSet {
    if (this.limitsVersion !== tiers.version) this.relimit(tiers);
    return this.limitSet;
  }

  /** Re-resolves limits after a tier edit or a change of tier or overrides, keeping counters by name. */
  relimit(tiers: TierRegistry): void {
    const next = this.resolveLimits(tiers);
    if (next !== this.limitSet) {
      this.quota = migrateQuotaState(this.limitSet, this.quota, next);
      this.limitSet = next;
      this.markDirty();
    }
    this.limitsVersion = tiers.version;
  }

  private resolveLimits(tiers: TierRegistry): LimitSet {
    const tier = tiers.get(this.tier) ?? tiers.get('free');
    const tierLimits = tier?.limits ?? [];
    if (this.overrides === null && tier !== undefined) return tier.set;
    return compileLimits(effectiveLimits(tierLimits, this.overrides ?? []));
  }

  // ---- write-behind --------------------------------------------------------------------

  override persistedState(): unknown {
    const json: UserStateJSON = quotaStateToJSON(this.limitSet, this.quota);
    if (this.usage !== null) json.usage = this.usage.toJSON();
    return json;
  }

  override pendingUsage(): PendingUsage | null {
    return this.usage?.pendingUsage() ?? null;
  }

  override liveUsage(): LiveUsage | null {
    return this.usage?.live() ?? null;
  }

  override written(row: PersistedState): void {
    // The counters stay once made, even empty: their roll numbers must go on from where they are.
    if (row.usage != null) this.usage?.added(row.usage.rolls);
  }

  /** Before it leaves memory idle, the user's counters roll into the history (written by the next flush). */
  override leaving(): void {
    if (this.usage?.rollNow() === true) this.markDirty();
  }

  override takeActivity(): ActivityTouches | null {
    let touches: ActivityTouches | null = null;
    for (const session of this.sessions) {
      if (!session.touched) continue;
      session.touched = false;
      session.writtenAt = session.lastActiveAt;
      touches ??= { sessions: [], keys: [] };
      touches.sessions.push({ id: session.id, at: new Date(session.lastActiveAt) });
    }
    for (const key of this.keys) {
      if (!key.touched || key.lastUsedAt === null) continue;
      key.touched = false;
      key.writtenAt = key.lastUsedAt;
      touches ??= { sessions: [], keys: [] };
      touches.keys.push({ id: key.id, at: new Date(key.lastUsedAt) });
    }
    return touches;
  }

  override activityDueNow(): void {
    let due = false;
    for (const session of this.sessions) {
      if (!session.touched && session.lastActiveAt > session.writtenAt) due = session.touched = true;
    }
    for (const key of this.keys) {
      if (!key.touched && key.lastUsedAt !== null && key.lastUsedAt > key.writtenAt) due = key.touched = true;
    }
    if (due) this.markActivity();
  }

  protected override hasPendingActivity(): boolean {
    return this.sessions.some((session) => session.touched) || this.keys.some((key) => key.touched);
  }
}

const TRUSTED: Principal = Object.freeze({ via: 'trusted' });
const SERVICE: Principal = Object.freeze({ via: 'service' });
const BLOCKED = 'this user is blocked';

export function toSession(record: SessionRecord): Session {
  return {
    id: record.id,
    deviceName: record.deviceName,
    deviceType: record.deviceType,
    ip: record.ip,
    userAgent: record.userAgent,
    createdAt: record.createdAt.getTime(),
    expiresAt: record.expiresAt.getTime(),
    lastActiveAt: record.lastActiveAt.getTime(),
    writtenAt: record.lastActiveAt.getTime(),
    touched: false,
  };
}

export function toApiKey(record: ApiKeyRecord): ApiKey {
  return {
    id: record.id,
    hash: record.hash,
    name: record.name,
    scopes: internScopes(record.scopes),
    createdAt: record.createdAt.getTime(),
    expiresAt: record.expiresAt?.getTime() ?? null,
    lastUsedAt: record.lastUsedAt?.getTime() ?? null,
    writtenAt: record.lastUsedAt?.getTime() ?? 0,
    touched: false,
  };
}

/** The engine's decision as the actor answers it: without the next state. */
function decisionOf(result: Decision): QuotaDecision {
  const decision: QuotaDecision = {
    allowed: result.allowed,
    limits: result.limits,
    retryAfterMs: result.retryAfterMs,
    exceedsCapacity: result.exceedsCapacity,
  };
  if (result.denied !== undefined) decision.denied = result.denied;
  return decision;
}
