/**
 * Holds: costs charged by a reservation before the real cost is known. Settling turns a
 * hold of `cost` into `actual`:
 * - an extra (actual > cost) is charged to every limit that applied, even past the limit,
 *   since the work already happened;
 * - a refund (actual < cost) goes back to windows and budgets exactly, to the slot or
 *   period the hold was charged to, and only while that slot is still counted or that
 *   period is still current (otherwise it counts nothing any more anyway);
 * - GCRA rate limits are never refunded. A refund cannot be made exact once the bucket has
 *   drained in between (the hold's units may already have been forgiven by the passing of
 *   time), and an inexact one could over-admit later.
 * An expired hold is released (settled at 0) by the next operation on the user.
 */

import { chargeLimit, refundLimit } from './kinds.js';
import { applies, type LimitSet } from './limitSet.js';

export interface Hold {
  readonly id: string;
  readonly cost: number;
  readonly resource: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** Per limit of the set, by position: the slot (window) or period start (budget) charged; NaN when nothing can be refunded. */
  readonly marks: readonly number[];
}

/** At most this many open holds per user: reservations past it are refused. */
export const MAX_HOLDS = 1000;

/** Settles `hold` at `actual` on `cells`. */
export function settleHold(set: LimitSet, cells: number[], now: number, hold: Hold, actual: number): void {
  if (actual === hold.cost) return;
  const extra = actual > hold.cost;
  const amount = extra ? actual - hold.cost : hold.cost - actual;
  for (let i = 0; i < set.compiled.length; i++) {
    const entry = set.compiled[i]!;
    if (!applies(entry.limit, hold.resource)) continue;
    if (extra) chargeLimit(entry, cells, now, amount);
    else {
      const mark = hold.marks[i];
      if (mark !== undefined && !Number.isNaN(mark)) refundLimit(entry, cells, mark, amount);
    }
  }
}

/** Releases every hold that expired by `now`; returns the live holds (the same array when none expired). */
export function expireHolds(set: LimitSet, cells: number[], holds: readonly Hold[] | null, now: number): readonly Hold[] | null {
  if (holds === null) return null;
  let expired = 0;
  for (const hold of holds) if (hold.expiresAt <= now) expired++;
  if (expired === 0) return holds;
  if (expired === holds.length) {
    for (const hold of holds) settleHold(set, cells, now, hold, 0);
    return null;
  }
  const live: Hold[] = [];
  for (const hold of holds) {
    if (hold.expiresAt <= now) settleHold(set, cells, now, hold, 0);
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
