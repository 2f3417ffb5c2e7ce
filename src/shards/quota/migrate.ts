/**
 * Carrying a user's counters across an edit of its limits. Counters move by limit NAME and
 * kind, never by position, so an edit keeps the usage of every limit that stayed and starts
 * new limits fresh. When a kept limit's parameters changed, its counters are converted so
 * that they still never under-count what was admitted.
 */
import { addSaturating } from './amounts.js';
import { freshCells, type QuotaState } from './engine.js';
import { gcraCellsAt, gcraParams, gcraTat } from './gcra.js';
import type { Hold } from './holds.js';
import { type CompiledLimit, cellsOf, type LimitSet } from './limitSet.js';
import type { Limit } from './limits.js';
import { RING, slotCell } from './window.js';

export function migrateQuotaState(from: LimitSet, state: QuotaState, to: LimitSet): QuotaState {
  if (from === to) return state;
  const cells = freshCells(to);
  /** Per new limit, the old limit of its name and kind, or -1: what a hold charged it moves with it. */
  const heldFrom = to.compiled.map((entry) =>
    from.compiled.findIndex((candidate) => candidate.limit.name === entry.limit.name && candidate.limit.kind === entry.limit.kind),
  );
  /** Per new limit, the old limit's position whose hold marks still hold, or -1. */
  const marksFrom = heldFrom.map((old, i) => {
    if (old < 0) return -1;
    const source = from.compiled[old]!;
    return carryCells(source.limit, state.cells, source.offset, to.compiled[i]!, cells) ? old : -1;
  });
  const holds =
    state.holds?.map(
      (hold): Hold => ({
        ...hold,
        held: heldFrom.map((old) => (old < 0 ? 0 : (hold.held[old] ?? 0))),
        marks: marksFrom.map((old) => (old < 0 ? NaN : (hold.marks[old] ?? NaN))),
      }),
    ) ?? null;
  return { cells, holds, idem: state.idem };
}

/**
 * Copies the counters of `from` (cells at `offset` of `source`) into `to`'s place in
 * `target`, converting them when the parameters differ. Returns whether hold marks (window
 * slots, budget period starts) still mean the same thing.
 */
export function carryCells(from: Limit, source: readonly number[], offset: number, to: CompiledLimit, target: number[]): boolean {
  const limit = to.limit;
  if (from.kind === 'rate' && limit.kind === 'rate' && (from.limit !== limit.limit || from.period_ms !== limit.period_ms)) {
    // Units of another emission interval: keep the moment the bucket is full again instead.
    const [anchor, units] = gcraCellsAt(gcraTat(gcraParams(from), source, offset));
    target[to.offset] = anchor;
    target[to.offset + 1] = units;
    return true;
  }
  if (from.kind === 'window' && limit.kind === 'window' && from.window_ms !== limit.window_ms) {
    // Slots of another width: put the whole count in the new slot that holds the end of the
    // newest old slot, so none of it leaves the new window earlier than it happened.
    let total = 0;
    for (let i = 1; i <= RING; i++) total = addSaturating(total, source[offset + i]!);
    if (total === 0) return false;
    const newest = Math.ceil(((source[offset]! + 1) * from.window_ms) / limit.window_ms) - 1;
    target[to.offset] = newest;
    target[slotCell(to.offset, newest)] = total;
    return false;
  }
  for (let c = 0; c < cellsOf(from); c++) target[to.offset + c] = source[offset + c]!;
  return true;
}
