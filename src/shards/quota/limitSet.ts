/**
 * A compiled, immutable set of limits, shared by every user of a tier: the limits, their
 * precomputed parameters, and where each limit's counters sit in a user's flat `cells`
 * array. A user's own memory is then just that array of numbers.
 */
import { BUDGET_CELLS } from './budget.js';
import { GCRA_CELLS, type GcraParams, gcraParams } from './gcra.js';
import type { Limit } from './limits.js';
import { WINDOW_CELLS } from './window.js';

export interface CompiledLimit {
  readonly limit: Limit;
  /** Where this limit's cells start in a user's `cells`. */
  readonly offset: number;
  /** GCRA parameters, for rate limits. */
  readonly gcra: GcraParams | null;
}

export interface LimitSet {
  readonly limits: readonly Limit[];
  readonly compiled: readonly CompiledLimit[];
  /** The length of a user's `cells`. */
  readonly size: number;
}

export function cellsOf(limit: Limit): number {
  return limit.kind === 'rate' ? GCRA_CELLS : limit.kind === 'window' ? WINDOW_CELLS : BUDGET_CELLS;
}

/** Compiles limits that validateLimits accepted. */
export function compileLimits(limits: readonly Limit[]): LimitSet {
  let offset = 0;
  const compiled = limits.map((limit) => {
    const entry: CompiledLimit = Object.freeze({
      limit: Object.freeze({ ...limit }),
      offset,
      gcra: limit.kind === 'rate' ? Object.freeze(gcraParams(limit)) : null,
    });
    offset += cellsOf(limit);
    return entry;
  });
  return Object.freeze({ limits: Object.freeze(compiled.map((entry) => entry.limit)), compiled: Object.freeze(compiled), size: offset });
}
