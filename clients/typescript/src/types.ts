/**
 * What calls take and answer, in the client's spelling (camelCase, numbers as numbers, times
 * as `Date`), and the conversions from Tally's wire format (snake_case JSON or MessagePack).
 */

/** One of the user's limits after the decision: what is left of it and when it is whole again. */
export interface LimitState {
  name: string;
  kind: 'rate' | 'window' | 'budget';
  limit: number;
  remaining: number;
  resetAt: Date;
}

/** A quota decision. A refusal is an answer like any other, not an error. */
export interface Decision {
  allowed: boolean;
  /** Every limit that applied, after the decision (empty when `degraded`). */
  limits: LimitState[];
  /** Refused: the name of the limit that refused. */
  denied?: string;
  /** Refused: when the same charge would fit. Absent when it never will (`exceedsCapacity`). */
  retryAfterMs?: number;
  /** Refused because the charge is more than the limit can ever admit: waiting does not help. */
  exceedsCapacity?: boolean;
  /**
   * Decided without the user's owner: Tally could not reach it and the user's tier fails
   * open, or no node answered and the call said `onUnavailable: 'allow'` (or `'deny'`).
   */
  degraded: boolean;
}

export interface ChargeOptions {
  /** The charge on the user's limits that name no resource (default 1). */
  cost?: number;
  /** Which resource's limits `cost` charges (default `"default"`). */
  resource?: string;
  /** Charges per resource, e.g. `{tokens: 512}`, besides `cost`. */
  amounts?: Record<string, number>;
}

export interface CallOptions {
  /** How long the call may take in all, retries included, in ms (default: the client's, 2000). */
  timeout?: number;
  /**
   * What to answer when no node of Tally answers in time (or the owner is away and the tier
   * is strict): `'allow'` resolves an allowed, degraded decision; `'deny'` a refused, degraded
   * one. Unset: what the user's tier says, as Tally answers it (a `fail_open` tier is allowed,
   * degraded, by any node that answers; a strict one is an `OwnerUnavailableError`), and an
   * `UnavailableError` or `TimeoutError` when no node answers at all.
   */
  onUnavailable?: 'allow' | 'deny';
}

export interface ConsumeOptions extends ChargeOptions, CallOptions {
  /**
   * The same key for the same user within 24 hours returns the first answer and charges
   * nothing more. With a key, a call whose answer was lost is safely sent again.
   */
  idempotencyKey?: string;
}

export interface ReserveOptions extends ChargeOptions, CallOptions {
  /** How long the hold lasts unless settled or released (default 60 s, at most an hour). */
  ttlMs?: number;
}

/** Who a consume is for: a user id, or the API key a caller presented (Tally checks it). */
export type Subject = string | { apiKey: string };

export interface Quota {
  tier: string;
  limits: LimitState[];
}

export interface VerifiedSession {
  userId: string;
  sessionId: string;
  tier: string;
  expiresAt: Date;
}

export interface LimiterDecision {
  allowed: boolean;
  remaining: number;
  resetAt: Date;
}

export interface UsageQuery {
  /** RFC 3339, or a Date. */
  start: string | Date;
  end?: string | Date;
  bucket?: '1h' | '1d';
  groupBy?: ('user' | 'tier' | 'resource')[];
  userId?: string;
  tier?: string;
  page?: string;
  limit?: number;
}

export interface UsageResult {
  resource?: string;
  userId?: string;
  tier?: string;
  amount: number;
  requests: number;
  denied: number;
}

export interface UsagePage {
  data: { start: Date; end: Date; results: UsageResult[] }[];
  /** Pass as `page` for the next page; null on the last. */
  nextPage: string | null;
}

// --- From the wire ----------------------------------------------------------------------

type Wire = Record<string, unknown>;

function limitFrom(wire: Wire): LimitState {
  return {
    name: wire.name as string,
    kind: wire.kind as LimitState['kind'],
    limit: wire.limit as number,
    remaining: wire.remaining as number,
    resetAt: new Date(wire.reset_at as string),
  };
}

export const limitsFrom = (wire: unknown): LimitState[] => (Array.isArray(wire) ? wire.map((limit) => limitFrom(limit as Wire)) : []);

export function decisionFrom(wire: Wire): Decision {
  const decision: Decision = { allowed: wire.allowed === true, limits: limitsFrom(wire.limits), degraded: wire.degraded === true };
  if (typeof wire.denied === 'string') decision.denied = wire.denied;
  if (typeof wire.retry_after_ms === 'number') decision.retryAfterMs = wire.retry_after_ms;
  if (wire.exceeds_capacity === true) decision.exceedsCapacity = true;
  return decision;
}

export const quotaFrom = (wire: Wire): Quota => ({ tier: wire.tier as string, limits: limitsFrom(wire.limits) });

export const sessionFrom = (wire: Wire): VerifiedSession => ({
  userId: wire.user_id as string,
  sessionId: wire.session_id as string,
  tier: wire.tier as string,
  expiresAt: new Date(wire.expires_at as string),
});

export const limiterFrom = (wire: Wire): LimiterDecision => ({
  allowed: wire.allowed === true,
  remaining: wire.remaining as number,
  resetAt: new Date(wire.reset_at as string),
});

export function usageFrom(wire: Wire): UsagePage {
  const data = (wire.data as Wire[]).map((bucket) => ({
    start: new Date(bucket.start as string),
    end: new Date(bucket.end as string),
    results: (bucket.results as Wire[]).map((result) => {
      const view: UsageResult = { amount: result.amount as number, requests: result.requests as number, denied: result.denied as number };
      if (typeof result.resource === 'string') view.resource = result.resource;
      if (typeof result.user_id === 'string') view.userId = result.user_id;
      if (typeof result.tier === 'string') view.tier = result.tier;
      return view;
    }),
  }));
  return { data, nextPage: typeof wire.next_page === 'string' ? wire.next_page : null };
}

// --- To the wire ------------------------------------------------------------------------

/** The charge fields of a consume or reserve, as the wire spells them (absent fields left out). */
export function chargeBody(options: ChargeOptions): Wire {
  const body: Wire = {};
  if (options.cost !== undefined) body.cost = options.cost;
  if (options.resource !== undefined) body.resource = options.resource;
  if (options.amounts !== undefined) body.amounts = options.amounts;
  return body;
}

export function usageBody(query: UsageQuery): Wire {
  const time = (value: string | Date) => (value instanceof Date ? value.toISOString() : value);
  const body: Wire = { start: time(query.start) };
  if (query.end !== undefined) body.end = time(query.end);
  if (query.bucket !== undefined) body.bucket = query.bucket;
  if (query.groupBy !== undefined) body.group_by = query.groupBy;
  if (query.userId !== undefined) body.user_id = query.userId;
  if (query.tier !== undefined) body.tier = query.tier;
  if (query.page !== undefined) body.page = query.page;
  if (query.limit !== undefined) body.limit = query.limit;
  return body;
}
