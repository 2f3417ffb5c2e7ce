/**
 * Holds: amounts charged by a reservation before the real ones are known. Settling turns
 * what a hold charged each limit into what the settlement charges it (see charge.ts for
 * what a charge puts on each limit), limit by limit:
 * - an extra (more than was held) is charged to that limit even past the limit, since the
 *   work already happened;
 * - a refund (less than was held) goes back to windows and budgets exactly, to the slot or
 *   period the hold was charged to, and only while that slot is still counted or that
 *   period is still current (otherwise it counts nothing any more anyway);
 * - GCRA rate limits are never refunded. A refund cannot be made exact once the bucket has
 *   drained in between (the hold's units may already have been forgiven by the passing of
 *   time), and an inexact one could over-admit later.
 * An expired hold is released (settled at 0) by the next operation on the user.
 */

import { amountFor, type Charge } from './charge.js';
import { chargeLimit, refundLimit } from './kinds.js';
import type { LimitSet } from './limitSet.js';

export interface Hold extends Charge {
  readonly id: string;
  readonly cost: number;
  readonly resource: string;
  /** The amounts of other resources held (none zero), or null. */
  readonly amounts: Readonly<Record<string, number>> | null;
  readonly createdAt: number;
  readonly expiresAt: number;
  /**
   * Per limit of the set, by position: what the hold charged it. Kept rather than worked out
   * again from the request, since a tier edit may move a limit onto another resource.
   */
  readonly held: readonly number[];
  /** Per limit of the set, by position: the slot (window) or period start (budget) charged; NaN when nothing can be refunded. */
  readonly marks: readonly number[];
}

/** At most this many open holds per user: reservations past it are refused. */
export const MAX_HOLDS = 1000;

/** A settlement: `actual` for the hold's cost, `amounts` for the resources it names. */
export interface Settlement {
  readonly actual?: number | undefined;
  readonly amounts?: Readonly<Record<string, number>> | undefined;
}

/** The charge of a release: nothing, on every limit. */
export const NOTHING: Charge = Object.freeze({ cost: 0 });

/**
 * What `settlement` settles `hold` at. `actual` replaces the hold's cost; `amounts` replace
 * the amounts they name, and naming the hold's own `resource` there is another way to give
 * `actual`; whatever neither names stays as held. A hold of amounts besides its cost is not
 * settled by `actual` alone, which could only guess which of them it meant: the answer is
 * then a string saying why, as it is when `actual` and `amounts` disagree.
 */
export function settledCharge(hold: Hold, settlement: Settlement): Charge | string {
  const { actual, amounts } = settlement;
  if (actual === undefined && amounts === undefined) throw new RangeError('a settlement needs actual or amounts');
  if (amounts === undefined) {
    if (hold.amounts !== null) return `hold "${hold.id}" holds ${heldNames(hold)}: settle it with amounts`;
    return { cost: actual!, resource: hold.resource };
  }
  let cost = actual ?? hold.cost;
  // A Map, not assignment: a resource may be named "__proto__".
  const rest = new Map(Object.entries(hold.amounts ?? {}));
  for (const [name, amount] of Object.entries(amounts)) {
    if (name !== hold.resource) rest.set(name, amount);
    else if (actual !== undefined && actual !== amount) return `actual (${actual}) and amounts.${name} (${amount}) disagree`;
    else cost = amount;
  }
  return { cost, resource: hold.resource, amounts: Object.fromEntries(rest) };
}

function heldNames(hold: Hold): string {
  return [hold.resource, ...Object.keys(hold.amounts ?? {})].map((name) => `"${name}"`).join(' and ');
}

/** Turns what `hold` charged each limit into what `actual` charges it. Returns whether the limit at each position took part. */
export function settleHold(set: LimitSet, cells: number[], now: number, hold: Hold, actual: Charge): boolean[] {
  return set.compiled.map((entry, i) => {
    const held = hold.held[i] ?? 0;
    const settled = amountFor(entry.limit, actual);
    if (settled > held) chargeLimit(entry, cells, now, settled - held);
    else if (settled < held) {
      const mark = hold.marks[i];
      if (mark !== undefined && !Number.isNaN(mark)) refundLimit(entry, cells, mark, held - settled);
    }
    return held > 0 || settled > 0;
  });
}

/** Releases every hold that expired by `now`; returns the live holds (the same array when none expired). */
export function expireHolds(set: LimitSet, cells: number[], holds: readonly Hold[] | null, now: number): readonly Hold[] | null {
  if (holds === null) return null;
  let expired = 0;
  for (const hold of holds) if (hold.expiresAt <= now) expired++;
  if (expired === 0) return holds;
  if (expired === holds.length) {
    for (const hold of holds) settleHold(set, cells, now, hold, NOTHING);
    return null;
  }
  const live: Hold[] = [];
  for (const hold of holds) {
    if (hold.expiresAt <= now) settleHold(set, cells, now, hold, NOTHING);
    else live.push(hold);
  }
  return live;
}

export function findHold(holds: readonly Hold[] | null, id: string): number {
  if (holds === null) return -1;
  for (let i = 0; i < holds.length; i++) if (holds[i]!.id === id) return i;
  return -1;
}

/** The holds without the one at `index`; null when none are left, to keep idle users small. */
export function withoutHold(holds: readonly Hold[], index: number): readonly Hold[] | null {
  if (holds.length === 1) return null;
  return holds.filter((_, i) => i !== index);
}
