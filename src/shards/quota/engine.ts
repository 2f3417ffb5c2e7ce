/**
 * The composite quota operations over a LimitSet and one user's QuotaState. Pure: each
 * takes (set, state, now, request) and returns its answer with the next state. The input is
 * never modified; a refusal that changed nothing returns the input state itself, so a
 * caller can tell by identity that there is nothing to write.
 *
 * Every operation first releases the holds that expired by `now`. A consume is all or
 * nothing: every limit that applies must admit the cost, or none is charged. A
 * reservation charges its cost exactly as a consume would and keeps it as a hold, which
 * settle or release later adjusts (see holds.ts for what is refunded and why).
 */
import { assertAmount } from './amounts.js';
import { expireHolds, findHold, type Hold, MAX_HOLDS, settleHold, withoutHold } from './holds.js';
import type { IdempotencyEntry } from './idempotency.js';
import { advanceLimit, chargeLimit, exceedsCapacity, limitState, waitFor } from './kinds.js';
import { applies, type LimitSet } from './limitSet.js';
import type { LimitState } from './limits.js';

export interface QuotaState {
  readonly cells: readonly number[];
  /** null when there are none, to keep idle users small. */
  readonly holds: readonly Hold[] | null;
  readonly idem: readonly IdempotencyEntry[] | null;
}

export interface QuotaRequest {
  cost: number;
  /** Limits with a `resource` apply only to requests naming it. */
  resource?: string;
}

export interface Decision {
  allowed: boolean;
  state: QuotaState;
  /** The limits that applied to the request, after it. */
  limits: LimitState[];
  /** 0 when allowed; else when every limit would admit the cost. */
  retryAfterMs: number;
  /** The cost is above some limit's capacity: waiting will not help. */
  exceedsCapacity: boolean;
  /** The first limit that refused, or TOO_MANY_HOLDS. */
  denied?: string;
}

export interface Settled {
  found: boolean;
  state: QuotaState;
  /** The limits that applied to the hold, after settling; empty when not found. */
  limits: LimitState[];
}

export const DEFAULT_RESOURCE = 'default';
/** `denied` for a reservation refused because the user has MAX_HOLDS open; "#" is never in a limit name. */
export const TOO_MANY_HOLDS = '#holds';

export function newQuotaState(set: LimitSet): QuotaState {
  return { cells: freshCells(set), holds: null, idem: null };
}

export function freshCells(set: LimitSet): number[] {
  return new Array<number>(set.size).fill(0);
}

export function consume(set: LimitSet, state: QuotaState, now: number, request: QuotaRequest): Decision {
  assertAmount('cost', request.cost, 1);
  const cells = advanced(set, state, now);
  const holds = expireHolds(set, cells, state.holds, now);
  const resource = request.resource ?? DEFAULT_RESOURCE;
  const refused = firstRefusal(set, cells, now, request.cost, resource);
  if (refused >= 0) return refusal(set, state, cells, holds, now, request.cost, resource, refused);
  for (const entry of set.compiled) if (applies(entry.limit, resource)) chargeLimit(entry, cells, now, request.cost);
  return { allowed: true, state: { cells, holds, idem: state.idem }, limits: states(set, cells, now, resource), retryAfterMs: 0, exceedsCapacity: false };
}

export function reserve(set: LimitSet, state: QuotaState, now: number, request: QuotaRequest & { id: string; ttlMs: number }): Decision & { hold?: Hold } {
  assertAmount('cost', request.cost, 1);
  assertAmount('ttlMs', request.ttlMs, 1);
  const cells = advanced(set, state, now);
  const holds = expireHolds(set, cells, state.holds, now);
  if (findHold(holds, request.id) >= 0) throw new RangeError(`a hold "${request.id}" is already open`);
  const resource = request.resource ?? DEFAULT_RESOURCE;
  if (holds !== null && holds.length >= MAX_HOLDS) return tooManyHolds(set, state, cells, holds, now, resource);
  const refused = firstRefusal(set, cells, now, request.cost, resource);
  if (refused >= 0) return refusal(set, state, cells, holds, now, request.cost, resource, refused);
  const marks = set.compiled.map((entry) => (applies(entry.limit, resource) ? chargeLimit(entry, cells, now, request.cost) : NaN));
  const hold: Hold = { id: request.id, cost: request.cost, resource, createdAt: now, expiresAt: now + request.ttlMs, marks };
  const next = { cells, holds: holds === null ? [hold] : [...holds, hold], idem: state.idem };
  return { allowed: true, state: next, limits: states(set, cells, now, resource), retryAfterMs: 0, exceedsCapacity: false, hold };
}

/** Turns a hold into its actual cost (≥ 0). */
export function settle(set: LimitSet, state: QuotaState, now: number, request: { id: string; actual: number }): Settled {
  assertAmount('actual', request.actual, 0);
  const cells = advanced(set, state, now);
  const holds = expireHolds(set, cells, state.holds, now);
  const index = findHold(holds, request.id);
  if (holds === null || index < 0) {
    return { found: false, state: holds === state.holds ? state : { cells, holds, idem: state.idem }, limits: [] };
  }
  const hold = holds[index]!;
  settleHold(set, cells, now, hold, request.actual);
  return { found: true, state: { cells, holds: withoutHold(holds, index), idem: state.idem }, limits: states(set, cells, now, hold.resource) };
}

/** Refunds a whole hold: settle at 0. */
export function release(set: LimitSet, state: QuotaState, now: number, id: string): { found: boolean; state: QuotaState } {
  const { found, state: next } = settle(set, state, now, { id, actual: 0 });
  return { found, state: next };
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

function firstRefusal(set: LimitSet, cells: readonly number[], now: number, cost: number, resource: string): number {
  for (let i = 0; i < set.compiled.length; i++) {
    const entry = set.compiled[i]!;
    if (applies(entry.limit, resource) && waitFor(entry, cells, now, cost) > 0) return i;
  }
  return -1;
}

/** A refusal: the wait is the longest of the limits that apply, after which each admits the cost. */
function refusal(
  set: LimitSet,
  state: QuotaState,
  cells: number[],
  holds: readonly Hold[] | null,
  now: number,
  cost: number,
  resource: string,
  refused: number,
): Decision {
  let retryAfterMs = 0;
  let exceeds = false;
  for (const entry of set.compiled) {
    if (!applies(entry.limit, resource)) continue;
    const wait = waitFor(entry, cells, now, cost);
    if (wait > retryAfterMs) retryAfterMs = wait;
    if (exceedsCapacity(entry, cost)) exceeds = true;
  }
  const next = holds === state.holds ? state : { cells, holds, idem: state.idem };
  return {
    allowed: false,
    state: next,
    limits: states(set, cells, now, resource),
    retryAfterMs,
    exceedsCapacity: exceeds,
    denied: set.compiled[refused]!.limit.name,
  };
}

/** Refuses a reservation past MAX_HOLDS until the soonest open hold expires. */
function tooManyHolds(set: LimitSet, state: QuotaState, cells: number[], holds: readonly Hold[], now: number, resource: string): Decision {
  let soonest = Infinity;
  for (const hold of holds) if (hold.expiresAt < soonest) soonest = hold.expiresAt;
  const next = holds === state.holds ? state : { cells, holds, idem: state.idem };
  const retryAfterMs = Math.max(1, Math.ceil(soonest - now));
  return { allowed: false, state: next, limits: states(set, cells, now, resource), retryAfterMs, exceedsCapacity: false, denied: TOO_MANY_HOLDS };
}

function states(set: LimitSet, cells: readonly number[], now: number, resource: string | null): LimitState[] {
  const out: LimitState[] = [];
  for (const entry of set.compiled) if (resource === null || applies(entry.limit, resource)) out.push(limitState(entry, cells, now));
  return out;
}
