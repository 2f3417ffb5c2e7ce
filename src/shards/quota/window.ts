/**
 * A sliding-window counter that never over-admits. The window W is cut into SLOTS sub-slots
 * of width s = W/SLOTS aligned to multiples of s since epoch 0: slot k is [k·s, (k+1)·s).
 * A decision at `now` counts every slot that meets (now − W, now], which is slots K−10 … K
 * for K = slot(now). The oldest of them is counted whole although part of it has left the
 * window, so the total admitted in any interval of length W is at most `limit`, at the
 * price of under-admitting by at most one slot's worth.
 *
 * Slot indices are floor(t·SLOTS / W), not floor(t / s): both operands are integers, so
 * the index is exact even when s is not a whole number of ms.
 *
 * Cells: [newest slot index, then a ring of SLOTS + 1 counters indexed by slot mod RING].
 */
import { addSaturating } from './amounts.js';

const SLOTS = 10;
export const RING = SLOTS + 1;
export const WINDOW_CELLS = RING + 1;

export function slotOf(t: number, windowMs: number): number {
  return Math.floor((t * SLOTS) / windowMs);
}

/** The first instant at which slot k is no longer counted: (k+1)·s + W, rounded up to a ms. */
export function slotLeavesAt(slot: number, windowMs: number): number {
  return Math.ceil(((slot + 1 + SLOTS) * windowMs) / SLOTS);
}

/** The index in `cells` of slot `slot`'s counter, for a window whose cells start at `o`. */
export function slotCell(o: number, slot: number): number {
  return o + 1 + (((slot % RING) + RING) % RING);
}

/** Moves the ring forward to `now`'s slot, clearing the slots that left the window. */
export function windowAdvance(cells: number[], o: number, windowMs: number, now: number): void {
  const slot = slotOf(now, windowMs);
  const newest = cells[o]!;
  if (slot <= newest) return;
  const steps = Math.min(slot - newest, RING);
  for (let i = 1; i <= steps; i++) cells[slotCell(o, newest + i)] = 0;
  cells[o] = slot;
}

export function windowCount(cells: readonly number[], o: number): number {
  let sum = 0;
  for (let i = 1; i <= RING; i++) sum += cells[o + i]!;
  return sum;
}

/** 0 when `cost` fits now, else the ms until enough old slots have left (≥ 1). */
export function windowWait(limit: number, windowMs: number, cells: readonly number[], o: number, now: number, cost: number): number {
  if (cost <= limit - windowCount(cells, o)) return 0;
  if (cost > limit) return Math.max(1, windowResetAt(windowMs, cells, o, now) - now);
  // Walk from the newest slot back: the first slot whose count no longer leaves room for
  // `cost` must leave the window, and every older one leaves before it.
  const newest = cells[o]!;
  let kept = 0;
  for (let slot = newest; slot >= newest - SLOTS; slot--) {
    kept += cells[slotCell(o, slot)]!;
    if (cost > limit - kept) return Math.max(1, slotLeavesAt(slot, windowMs) - now);
  }
  return 1;
}

/** Adds to the newest slot (now's, after windowAdvance) and returns that slot for refunds. */
export function windowCharge(cells: number[], o: number, amount: number): number {
  const index = slotCell(o, cells[o]!);
  cells[index] = addSaturating(cells[index]!, amount);
  return cells[o]!;
}

/** Takes `amount` back from `slot` if it is still counted; a slot that left counts nothing anyway. */
export function windowRefund(cells: number[], o: number, slot: number, amount: number): void {
  const newest = cells[o]!;
  if (slot > newest || slot <= newest - RING) return;
  const index = slotCell(o, slot);
  const value = cells[index]! - amount;
  cells[index] = Math.max(value, 0);
}

/** When the newest non-empty slot stops being counted, so the window is empty; `now` if it is. */
export function windowResetAt(windowMs: number, cells: readonly number[], o: number, now: number): number {
  const newest = cells[o]!;
  for (let slot = newest; slot >= newest - SLOTS; slot--) {
    if (cells[slotCell(o, slot)]! > 0) return Math.max(now, slotLeavesAt(slot, windowMs));
  }
  return now;
}
