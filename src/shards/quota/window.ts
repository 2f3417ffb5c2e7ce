/**
 * A sliding-window counter that never over-admits. The window is cut into SLOTS sub-slots
 * of width s = window_ms / SLOTS, aligned to multiples of s; the count is the sum of every
 * slot that overlaps the last window_ms. The oldest slot is counted whole although part of
 * it has left the window, so the admitted total in any window_ms is at most `limit`, at the
 * price of under-admitting by at most one slot's worth.
 *
 * Cells: [newest slot index, c_0 … c_SLOTS] — a ring of SLOTS + 1 counters by slot index.
 */
export const SLOTS = 10;
export const RING = SLOTS + 1;
export const WINDOW_CELLS = RING + 1;

export function slotWidth(windowMs: number): number {
  return windowMs / SLOTS;
}

export function slotOf(now: number, width: number): number {
  return Math.floor(now / width);
}

/** Moves the ring forward to `now`, clearing slots that left the window. */
export function advanceWindow(cells: number[], offset: number, slot: number): void {
  const newest = cells[offset]!;
  if (slot <= newest) return;
  const steps = slot - newest >= RING ? RING : slot - newest;
  for (let i = 1; i <= steps; i++) cells[offset + 1 + ((newest + i) % RING)] = 0;
  cells[offset] = slot;
}

export function windowCount(cells: number[], offset: number): number {
  let sum = 0;
  for (let i = 1; i <= RING; i++) sum += cells[offset + i]!;
  return sum;
}

export function addToSlot(cells: number[], offset: number, slot: number, amount: number): void {
  const index = offset + 1 + (slot % RING);
  const value = cells[index]! + amount;
  cells[index] = value < 0 ? 0 : value;
}

/** True while a slot is still in the ring (so a refund to it still matters). */
export function slotCounted(cells: number[], offset: number, slot: number): boolean {
  return slot > cells[offset]! - RING && slot <= cells[offset]!;
}

/** The earliest time at which `cost` fits, after enough old slots have left the window. */
export function windowRetryAt(cells: number[], offset: number, limit: number, cost: number, width: number, windowMs: number): number {
  const newest = cells[offset]!;
  let left = windowCount(cells, offset);
  for (let slot = newest - SLOTS; slot <= newest; slot++) {
    left -= cells[offset + 1 + (((slot % RING) + RING) % RING)]!;
    if (cost <= limit - left) return (slot + 1) * width + windowMs;
  }
  return (newest + 1) * width + windowMs;
}

/** When the newest non-empty slot stops being counted: the window is then empty. */
export function windowResetAt(cells: number[], offset: number, width: number, windowMs: number, now: number): number {
  const newest = cells[offset]!;
  for (let slot = newest; slot >= newest - SLOTS; slot--) {
    if (cells[offset + 1 + (((slot % RING) + RING) % RING)]! > 0) return Math.ceil((slot + 1) * width + windowMs);
  }
  return now;
}
