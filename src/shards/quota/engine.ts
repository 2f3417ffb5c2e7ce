/**
 * Composite quota operations over a LimitSet and one user's QuotaState. Pure: each takes
 * (set, state, now, request) and returns a decision with the next state; the input state is
 * never modified, and a refusal returns the input state itself.
 *
 * - A consume is all or nothing: every limit that applies must admit the cost, or none is
 *   charged.
 * - A reservation charges its cost at once (a hold). Settling replaces the hold by the
 *   actual cost: budgets and windows get the difference back exactly (from the period or
 *   slot the hold was charged to, while that still counts) or are charged the extra, even
 *   past the limit, since the work already happened. GCRA rate limits are charged extras
 *   but never refunded: once the bucket has drained between hold and settle, no refund can
 *   be computed exactly, and an inexact one could over-admit later.
 * - Holds release themselves when they expire, at the next operation.
 */
import { gcraRemaining, gcraResetAt, gcraTake } from './gcra.js';
import type { IdempotencyEntry } from './idempotency.js';
import { applies, type CompiledLimit, type LimitSet } from './limitSet.js';
import type { LimitState } from './limits.js';
import { nextPeriodStart, periodStart } from './period.js';
import { addToSlot, advanceWindow, slotCounted, slotOf, windowCount, windowResetAt, windowRetryAt, WINDOW_CELLS } from './window.js';

export const MAX_HOLDS = 1000;

export interface Hold {
  id: string;
  cost: number;
  resource: string;
  createdAt: number;
  expiresAt: number;
  /** Per limit of the set: the slot (window) or period start (budget) charged; NaN if not charged or not refundable. */
  marks: number[];
}

export interface QuotaState {
  readonly cells: readonly number[];
  readonly holds: readonly Hold[] | null;
  readonly idem: readonly IdempotencyEntry[] | null;
}

export interface QuotaRequest {
  cost: number;
  resource: string;
}

export interface Decision {
  allowed: boolean;
  state: QuotaState;
  limits: LimitState[];
  retryAfterMs: number;
  exceedsCapacity: boolean;
  /** The first limit that refused. */
  denied?: string;
}

export function newQuotaState(set: LimitSet): QuotaState {
  return { cells: freshCells(set), holds: null, idem: null };
}

export function freshCells(set: LimitSet): number[] {
  return new Array<number>(set.size).fill(0);
}

export function consume(set: LimitSet, state: QuotaState, now: number, request: QuotaRequest): Decision {
  const cells = state.cells.slice();
  prepare(set, cells, now);
  const holds = expireHolds(set, cells, state.holds, now);
  const verdict = admit(set, cells, now, request);
  if (!verdict.allowed) {
    const next = holds === state.holds ? state : { cells, holds, idem: state.idem };
    return { ...verdict, state: next, limits: states(set, cells, now, request.resource) };
  }
  charge(set, cells, now, request, null);
  return { allowed: true, state: { cells, holds, idem: state.idem }, limits: states(set, cells, now, request.resource), retryAfterMs: 0, exceedsCapacity: false };
}

export function reserve(set: LimitSet, state: QuotaState, now: number, request: QuotaRequest & { id: string; ttlMs: number }): Decision & { hold?: Hold } {
  const cells = state.cells.slice();
  prepare(set, cells, now);
  const holds = expireHolds(set, cells, state.holds, now);
  if (holds !== null && holds.length >= MAX_HOLDS) {
    const next = holds === state.holds ? state : { cells, holds, idem: state.idem };
    return { allowed: false, state: next, limits: states(set, cells, now, request.resource), retryAfterMs: 1000, exceedsCapacity: false, denied: 'holds' };
  }
  const verdict = admit(set, cells, now, request);
  if (!verdict.allowed) {
    const next = holds === state.holds ? state : { cells, holds, idem: state.idem };
    return { ...verdict, state: next, limits: states(set, cells, now, request.resource) };
  }
  const hold: Hold = { id: request.id, cost: request.cost, resource: request.resource, createdAt: now, expiresAt: now + request.ttlMs, marks: [] };
  charge(set, cells, now, request, hold.marks);
  return { ...verdict, hold, state: { cells, holds: [...(holds ?? []), hold], idem: state.idem }, limits: states(set, cells, now, request.resource) };
}

export function settle(set: LimitSet, state: QuotaState, now: number, request: { id: string; actual: number }): { found: boolean; state: QuotaState; limits: LimitState[] } {
  const cells = state.cells.slice();
  prepare(set, cells, now);
  const holds = expireHolds(set, cells, state.holds, now);
  const hold = holds?.find((candidate) => candidate.id === request.id);
  if (hold === undefined) return { found: false, state: { cells, holds, idem: state.idem }, limits: [] };
  adjust(set, cells, now, hold, request.actual);
  const rest = holds!.filter((candidate) => candidate !== hold);
  return { found: true, state: { cells, holds: rest.length === 0 ? null : rest, idem: state.idem }, limits: states(set, cells, now, hold.resource) };
}

export function release(set: LimitSet, state: QuotaState, now: number, id: string): { found: boolean; state: QuotaState } {
  const settled = settle(set, state, now, { id, actual: 0 });
  return { found: settled.found, state: settled.state };
}

/** Every limit's state, charging nothing. */
export function snapshot(set: LimitSet, state: QuotaState, now: number): LimitState[] {
  const cells = state.cells.slice();
  prepare(set, cells, now);
  expireHolds(set, cells, state.holds, now);
  return states(set, cells, now, null);
}

/** Brings windows and budget periods forward to `now`. */
function prepare(set: LimitSet, cells: number[], now: number): void {
  for (const entry of set.compiled) {
    const { limit, offset } = entry;
    if (limit.kind === 'window') advanceWindow(cells, offset, slotOf(now, entry.width));
    else if (limit.kind === 'budget' && now >= cells[offset + 2]!) {
      const start = periodStart(now, limit.period);
      if (start > cells[offset + 1]!) cells[offset] = 0;
      cells[offset + 1] = start;
      cells[offset + 2] = nextPeriodStart(start, limit.period);
    }
  }
}

function expireHolds(set: LimitSet, cells: number[], holds: readonly Hold[] | null, now: number): readonly Hold[] | null {
  if (holds === null) return null;
  let expired = false;
  for (const hold of holds) if (hold.expiresAt <= now) expired = true;
  if (!expired) return holds;
  const live: Hold[] = [];
  for (const hold of holds) {
    if (hold.expiresAt <= now) adjust(set, cells, now, hold, 0);
    else live.push(hold);
  }
  return live.length === 0 ? null : live;
}

function admit(set: LimitSet, cells: number[], now: number, request: QuotaRequest): Omit<Decision, 'state' | 'limits'> {
  let retryAfterMs = 0;
  let exceedsCapacity = false;
  let denied: string | undefined;
  const { cost, resource } = request;
  for (const entry of set.compiled) {
    const { limit, offset } = entry;
    if (!applies(limit, resource)) continue;
    let wait = 0;
    if (limit.kind === 'rate') {
      const outcome = gcraTake(entry.gcra!, cells[offset]!, now, cost);
      if (outcome.allowed) continue;
      wait = outcome.retryAfterMs;
      if (outcome.exceedsCapacity) exceedsCapacity = true;
    } else if (limit.kind === 'window') {
      if (cost <= limit.limit - windowCount(cells, offset)) continue;
      if (cost > limit.limit) exceedsCapacity = true;
      wait = Math.ceil(windowRetryAt(cells, offset, limit.limit, cost, entry.width, limit.window_ms) - now);
    } else {
      if (cost <= limit.limit - cells[offset]!) continue;
      if (cost > limit.limit) exceedsCapacity = true;
      wait = cells[offset + 2]! - now;
    }
    denied ??= limit.name;
    if (wait > retryAfterMs) retryAfterMs = wait;
  }
  if (denied === undefined) return { allowed: true, retryAfterMs: 0, exceedsCapacity: false };
  return { allowed: false, retryAfterMs: Math.max(1, retryAfterMs), exceedsCapacity, denied };
}

/** Charges an admitted request; for a hold, records where each unit went in `marks`. */
function charge(set: LimitSet, cells: number[], now: number, request: QuotaRequest, marks: number[] | null): void {
  for (let i = 0; i < set.compiled.length; i++) {
    const entry = set.compiled[i]!;
    const { limit, offset } = entry;
    if (!applies(limit, request.resource)) {
      if (marks !== null) marks[i] = NaN;
      continue;
    }
    if (limit.kind === 'rate') {
      cells[offset] = gcraTake(entry.gcra!, cells[offset]!, now, request.cost).tat;
      if (marks !== null) marks[i] = NaN;
    } else if (limit.kind === 'window') {
      addToSlot(cells, offset, cells[offset]!, request.cost);
      if (marks !== null) marks[i] = cells[offset]!;
    } else {
      cells[offset] = cells[offset]! + request.cost;
      if (marks !== null) marks[i] = cells[offset + 1]!;
    }
  }
}

/** Turns a hold of `hold.cost` into `actual`: refunds or charges the difference. */
function adjust(set: LimitSet, cells: number[], now: number, hold: Hold, actual: number): void {
  const extra = actual - hold.cost;
  if (extra === 0) return;
  for (let i = 0; i < set.compiled.length; i++) {
    const entry = set.compiled[i]!;
    const { limit, offset } = entry;
    if (!applies(limit, hold.resource)) continue;
    const mark = hold.marks[i] ?? NaN;
    if (extra > 0) {
      if (limit.kind === 'rate') {
        const tat = cells[offset]!;
        cells[offset] = (tat > now ? tat : now) + extra * entry.gcra!.interval;
      } else if (limit.kind === 'window') addToSlot(cells, offset, cells[offset]!, extra);
      else cells[offset] = cells[offset]! + extra;
    } else if (!Number.isNaN(mark)) {
      if (limit.kind === 'window' && slotCounted(cells, offset, mark)) addToSlot(cells, offset, mark, extra);
      else if (limit.kind === 'budget' && mark === cells[offset + 1]) cells[offset] = Math.max(0, cells[offset]! + extra);
    }
  }
}

function states(set: LimitSet, cells: number[], now: number, resource: string | null): LimitState[] {
  const out: LimitState[] = [];
  for (const entry of set.compiled) {
    if (resource !== null && !applies(entry.limit, resource)) continue;
    out.push(limitState(entry, cells, now));
  }
  return out;
}

function limitState(entry: CompiledLimit, cells: number[], now: number): LimitState {
  const { limit, offset } = entry;
  if (limit.kind === 'rate') {
    const tat = cells[offset]!;
    return { name: limit.name, kind: 'rate', limit: limit.limit, remaining: gcraRemaining(entry.gcra!, tat, now), reset_at: gcraResetAt(tat, now), window_ms: limit.period_ms };
  }
  if (limit.kind === 'window') {
    const remaining = limit.limit - windowCount(cells, offset);
    return {
      name: limit.name,
      kind: 'window',
      limit: limit.limit,
      remaining: remaining > 0 ? remaining : 0,
      reset_at: windowResetAt(cells, offset, entry.width, limit.window_ms, now),
      window_ms: limit.window_ms,
    };
  }
  const start = cells[offset + 1]!;
  const end = cells[offset + 2]!;
  const remaining = limit.limit - cells[offset]!;
  return { name: limit.name, kind: 'budget', limit: limit.limit, remaining: remaining > 0 ? remaining : 0, reset_at: end, window_ms: end - start };
}

export { WINDOW_CELLS };
