/**
 * The composite quota operations over a LimitSet and one user's QuotaState. Pure: each
 * takes (set, state, now, request) and returns its answer with the next state. The input is
 * never modified; a refusal that changed nothing returns the input state itself, so a
 * caller can tell by identity that there is nothing to write.
 *
 * Every operation first releases the holds that expired by `now`. A request charges each
 * limit the amount charge.ts gives it, and a consume is all or nothing: every limit that
 * applies must admit its amount, or none is charged. A reservation charges exactly as a
 * consume would and keeps what it charged as a hold, which settle or release later adjusts
 * (see holds.ts for what is refunded and why).
 */
import { assertAmount } from './amounts.js';
import { amountFor, assertAmounts, assertCharge, type Charge, DEFAULT_RESOURCE, nonZeroAmounts } from './charge.js';
import { expireHolds, findHold, type Hold, MAX_HOLDS, NOTHING, type Settlement, settledCharge, settleHold, withoutHold } from './holds.js';
import type { IdempotencyEntry } from './idempotency.js';
import { advanceLimit, chargeLimit, exceedsCapacity, limitState, waitFor } from './kinds.js';
import type { LimitSet } from './limitSet.js';
import type { LimitState } from './limits.js';

export interface QuotaState {
  readonly cells: readonly number[];
  /** null when there are none, to keep idle users small. */
  readonly holds: readonly Hold[] | null;
  readonly idem: readonly IdempotencyEntry[] | null;
}

/** `cost`, and amounts of named resources: see charge.ts for what each limit is charged. */
export type QuotaRequest = Charge;

export interface Decision {
  allowed: boolean;
  state: QuotaState;
  /** The limits that applied to the request, after it. */
  limits: LimitState[];
  /** 0 when allowed; else when every limit would admit the cost. */
  retryAfterMs: number;
  /** An amount is above its limit's capacity: waiting will not help. */
  exceedsCapacity: boolean;
  /** The limit whose capacity is exceeded, else the first limit that refused, or TOO_MANY_HOLDS. */
  denied?: string;
}

export interface Settled {
  found: boolean;
  state: QuotaState;
  /** The limits that applied to the hold or its settlement, after settling; empty when not found or refused. */
  limits: LimitState[];
  /** Why a hold that was found was left as it was (see settledCharge). */
  refused?: string;
}
/** `denied` for a reservation refused because the user has MAX_HOLDS open; "#" is never in a limit name. */
export const TOO_MANY_HOLDS = '#holds';

export function newQuotaState(set: LimitSet): QuotaState {
  return { cells: freshCells(set), holds: null, idem: null };
}

export function freshCells(set: LimitSet): number[] {
  return new Array<number>(set.size).fill(0);
}

export function consume(set: LimitSet, state: QuotaState, now: number, request: QuotaRequest): Decision {
  assertCharge(request, 1);
  const cells = advanced(set, state, now);
  const holds = expireHolds(set, cells, state.holds, now);
  const refused = firstRefusal(set, cells, now, request);
  if (refused >= 0) return refusal(set, state, cells, holds, now, request, refused);
  for (const entry of set.compiled) {
    const amount = amountFor(entry.limit, request);
    if (amount > 0) chargeLimit(entry, cells, now, amount);
  }
  return { allowed: true, state: { cells, holds, idem: state.idem }, limits: states(set, cells, now, request), retryAfterMs: 0, exceedsCapacity: false };
}

export function reserve(set: LimitSet, state: QuotaState, now: number, request: QuotaRequest & { id: string; ttlMs: number }): Decision & { hold?: Hold } {
  assertCharge(request, 1);
  assertAmount('ttlMs', request.ttlMs, 1);
  const cells = advanced(set, state, now);
  const holds = expireHolds(set, cells, state.holds, now);
  if (findHold(holds, request.id) >= 0) throw new RangeError(`a hold "${request.id}" is already open`);
  // Limits first: an amount that can never fit is told so, whatever the number of holds.
  const refused = firstRefusal(set, cells, now, request);
  if (refused >= 0) return refusal(set, state, cells, holds, now, request, refused);
  if (holds !== null && holds.length >= MAX_HOLDS) return tooManyHolds(set, state, cells, holds, now, request);
  const held = set.compiled.map((entry) => amountFor(entry.limit, request));
  const marks = set.compiled.map((entry, i) => (held[i]! > 0 ? chargeLimit(entry, cells, now, held[i]!) : NaN));
  const hold: Hold = {
    id: request.id,
    cost: request.cost,
    resource: request.resource ?? DEFAULT_RESOURCE,
    amounts: nonZeroAmounts(request.amounts),
    createdAt: now,
    expiresAt: now + request.ttlMs,
    held,
    marks,
  };
  const next = { cells, holds: holds === null ? [hold] : [...holds, hold], idem: state.idem };
  return { allowed: true, state: next, limits: states(set, cells, now, request), retryAfterMs: 0, exceedsCapacity: false, hold };
}

/** Turns a hold into what it actually took (see settledCharge): the differences are refunded or charged per limit. */
export function settle(set: LimitSet, state: QuotaState, now: number, request: Settlement & { id: string }): Settled {
  if (request.actual !== undefined) assertAmount('actual', request.actual, 0);
  if (request.amounts !== undefined) assertAmounts(request.amounts);
  return closeHold(set, state, now, request.id, (hold) => settledCharge(hold, request));
}

/** Refunds a whole hold. */
export function release(set: LimitSet, state: QuotaState, now: number, id: string): { found: boolean; state: QuotaState } {
  const { found, state: next } = closeHold(set, state, now, id, () => NOTHING);
  return { found, state: next };
}

function closeHold(set: LimitSet, state: QuotaState, now: number, id: string, settledAt: (hold: Hold) => Charge | string): Settled {
  const cells = advanced(set, state, now);
  const holds = expireHolds(set, cells, state.holds, now);
  const unchanged = withHolds(state, cells, holds);
  const index = findHold(holds, id);
  if (holds === null || index < 0) return { found: false, state: unchanged, limits: [] };
  const hold = holds[index]!;
  const actual = settledAt(hold);
  if (typeof actual === 'string') return { found: true, state: unchanged, limits: [], refused: actual };
  const tookPart = settleHold(set, cells, now, hold, actual);
  const limits = set.compiled.flatMap((entry, i) => (tookPart[i] === true ? [limitState(entry, cells, now)] : []));
  return { found: true, state: { cells, holds: withoutHold(holds, index), idem: state.idem }, limits };
}

/** Every limit's state at `now`, charging nothing. */
export function snapshot(set: LimitSet, state: QuotaState, now: number): LimitState[] {
  const cells = advanced(set, state, now);
  expireHolds(set, cells, state.holds, now);
  return states(set, cells, now, null);
}

/**
 * The earliest time from which `state` decides exactly like a fresh state: every limit is
 * full again and every hold has expired. State kept only for its limits (a limiter's) may be
 * deleted from then on.
 */
export function quietAt(set: LimitSet, state: QuotaState, now: number): number {
  const cells = advanced(set, state, now);
  let at = now;
  for (const entry of set.compiled) {
    const limit = limitState(entry, cells, now);
    // A budget's reset_at is the end of its period even when nothing of it is used.
    if (entry.limit.kind === 'budget' && limit.remaining === limit.limit) continue;
    if (limit.reset_at > at) at = limit.reset_at;
  }
  for (const hold of state.holds ?? []) if (hold.expiresAt > at) at = hold.expiresAt;
  return at;
}

/** A copy of the cells with windows and budget periods brought forward to `now`. */
function advanced(set: LimitSet, state: QuotaState, now: number): number[] {
  const cells = state.cells.slice();
  for (const entry of set.compiled) advanceLimit(entry, cells, now);
  return cells;
}

function firstRefusal(set: LimitSet, cells: readonly number[], now: number, request: Charge): number {
  for (let i = 0; i < set.compiled.length; i++) {
    const entry = set.compiled[i]!;
    const amount = amountFor(entry.limit, request);
    if (amount > 0 && waitFor(entry, cells, now, amount) > 0) return i;
  }
  return -1;
}

/**
 * A refusal: the wait is the longest of the limits that apply, after which each admits its
 * amount. It names the first limit whose capacity an amount exceeds, if any, since then no
 * wait helps; else the first limit that refused.
 */
function refusal(set: LimitSet, state: QuotaState, cells: number[], holds: readonly Hold[] | null, now: number, request: Charge, refused: number): Decision {
  let retryAfterMs = 0;
  let exceeded = -1;
  for (let i = 0; i < set.compiled.length; i++) {
    const entry = set.compiled[i]!;
    const amount = amountFor(entry.limit, request);
    if (amount === 0) continue;
    const wait = waitFor(entry, cells, now, amount);
    if (wait > retryAfterMs) retryAfterMs = wait;
    if (exceeded < 0 && exceedsCapacity(entry, amount)) exceeded = i;
  }
  const next = withHolds(state, cells, holds);
  return {
    allowed: false,
    state: next,
    limits: states(set, cells, now, request),
    retryAfterMs,
    exceedsCapacity: exceeded >= 0,
    denied: set.compiled[exceeded >= 0 ? exceeded : refused]!.limit.name,
  };
}

/** Refuses a reservation past MAX_HOLDS until the soonest open hold expires. */
function tooManyHolds(set: LimitSet, state: QuotaState, cells: number[], holds: readonly Hold[], now: number, request: Charge): Decision {
  let soonest = Infinity;
  for (const hold of holds) if (hold.expiresAt < soonest) soonest = hold.expiresAt;
  const next = withHolds(state, cells, holds);
  const retryAfterMs = Math.max(1, Math.ceil(soonest - now));
  return { allowed: false, state: next, limits: states(set, cells, now, request), retryAfterMs, exceedsCapacity: false, denied: TOO_MANY_HOLDS };
}

/** The state after a refusal: the input itself unless expired holds were released on the way. */
function withHolds(state: QuotaState, cells: number[], holds: readonly Hold[] | null): QuotaState {
  return holds === state.holds ? state : { cells, holds, idem: state.idem };
}

/** The states of the limits `charge` applies to (every limit when null). */
function states(set: LimitSet, cells: readonly number[], now: number, charge: Charge | null): LimitState[] {
  const out: LimitState[] = [];
  for (const entry of set.compiled) if (charge === null || amountFor(entry.limit, charge) > 0) out.push(limitState(entry, cells, now));
  return out;
}
