/**
 * GCRA, the Generic Cell Rate Algorithm (ITU-T I.371): with emission interval T = P/L
 * (period P ms, limit L) and capacity B (burst) units, a cost c conforms at `now` when
 * max(tat, now) + c·T − now ≤ B·T, and then tat becomes max(tat, now) + c·T.
 *
 * Why two cells and not the textbook single float `tat`: an epoch in ms is ~2^41, so a
 * float tat resolves only ~0.24 µs and every `tat += c·T` with a T like 1000/7 rounds. At
 * real timestamps that refuses exactly-fitting requests (7 a second, sent 7 at a time each
 * second, lost one every second), and once T is below half that resolution a cost of 1 no
 * longer moves tat at all, so the limit admits without bound. Instead tat is kept as
 * `anchor + units·P/L` with `anchor` in ms and `units` a whole number below L. Multiplied
 * by L, every comparison is then between products of integers, which exact.ts compares
 * exactly; whole periods (L units = P ms) are folded into the anchor. Exact while tat stays
 * below 2^53 ms (the year 287 396), which only a burst of ~2^53 units at ~1 unit a year passes.
 *
 * Cells: [anchor, units].
 */
import { ceilQuotient, compareProducts } from './exact.js';
import type { RateLimit } from './limits.js';

export const GCRA_CELLS = 2;

export interface GcraParams {
  /** L: units per period. */
  readonly limit: number;
  /** P: the period in ms. */
  readonly period: number;
  /** B: the most units admitted at once. */
  readonly burst: number;
}

export function gcraParams(limit: RateLimit): GcraParams {
  return { limit: limit.limit, period: limit.period_ms, burst: limit.burst ?? limit.limit };
}

/**
 * 0 when `cost` conforms at `now`, else the ms until it would (≥ 1). With D = now − anchor,
 * the test max(tat, now) − now ≤ (B − c)·T is (units − (B − c))·P ≤ D·L.
 */
export function gcraWait(p: GcraParams, cells: readonly number[], o: number, now: number, cost: number): number {
  // A cost above the burst never fits: answer the time until the bucket is full again.
  if (cost > p.burst) return Math.max(1, gcraResetAt(p, cells, o, now) - now);
  const excess = cells[o + 1]! - (p.burst - cost);
  const elapsed = now - cells[o]!;
  if (compareProducts(excess, p.period, elapsed, p.limit) <= 0) return 0;
  return Math.max(1, Math.ceil(ceilQuotient(excess, p.period, p.limit) - elapsed));
}

/** Adds `amount` units at max(tat, now), with no check: admission is the caller's. */
export function gcraCharge(p: GcraParams, cells: number[], o: number, now: number, amount: number): void {
  let anchor = cells[o]!;
  let units = cells[o + 1]!;
  if (compareProducts(units, p.period, now - anchor, p.limit) <= 0) {
    // tat ≤ now: the bucket is full, so the charge starts from now.
    anchor = now;
    units = 0;
  }
  // amount = whole·L + rest, computed so that nothing passes 2^53.
  let whole = Math.floor(amount / p.limit);
  let rest = amount - whole * p.limit;
  if (rest < 0) {
    whole -= 1;
    rest += p.limit;
  }
  if (rest >= p.limit - units) {
    units = rest - (p.limit - units);
    whole += 1;
  } else units += rest;
  cells[o] = anchor + whole * p.period;
  cells[o + 1] = units;
}

/** Theoretical arrival time, when the bucket is full again, rounded up to a ms. */
export function gcraTat(p: GcraParams, cells: readonly number[], o: number): number {
  return Math.ceil(cells[o]! + ceilQuotient(cells[o + 1]!, p.period, p.limit));
}

/** Whole units that would conform now, at most `cap`: the largest c with (units − B + c)·P ≤ D·L. */
export function gcraRemaining(p: GcraParams, cells: readonly number[], o: number, now: number, cap: number): number {
  const drained = -ceilQuotient(cells[o]! - now, p.limit, p.period); // floor(D·L / P)
  const free = p.burst - cells[o + 1]! + drained;
  const most = Math.min(cap, p.burst);
  return free < 0 ? 0 : Math.min(free, most);
}

export function gcraResetAt(p: GcraParams, cells: readonly number[], o: number, now: number): number {
  const tat = gcraTat(p, cells, o);
  return Math.max(tat, now);
}

/** Cells whose tat is `tat`: used when counters move to other parameters. */
export function gcraCellsAt(tat: number): [number, number] {
  return [Math.ceil(tat), 0];
}
