/**
 * One switch over the three kinds of limit, so the composite operations in engine.ts read
 * the same for all of them. Each function works on one limit's cells inside a user's array.
 */
import { budgetAdvance, budgetCharge, budgetRefund, budgetWait } from './budget.js';
import { gcraCharge, gcraRemaining, gcraResetAt, gcraWait } from './gcra.js';
import type { CompiledLimit } from './limitSet.js';
import type { LimitState } from './limits.js';
import { nextPeriodStart } from './period.js';
import { windowAdvance, windowCharge, windowCount, windowRefund, windowResetAt, windowWait } from './window.js';

/** Brings windows and budget periods forward to `now`. */
export function advanceLimit(entry: CompiledLimit, cells: number[], now: number): void {
  const { limit, offset } = entry;
  if (limit.kind === 'window') windowAdvance(cells, offset, limit.window_ms, now);
  else if (limit.kind === 'budget') budgetAdvance(limit.period, cells, offset, now);
}

/** 0 when `cost` fits now, else the ms until it would (or, past capacity, until the limit is fresh). */
export function waitFor(entry: CompiledLimit, cells: readonly number[], now: number, cost: number): number {
  const { limit, offset } = entry;
  switch (limit.kind) {
    case 'rate':
      return gcraWait(entry.gcra!, cells, offset, now, cost);
    case 'window':
      return windowWait(limit.limit, limit.window_ms, cells, offset, now, cost);
    case 'budget':
      return budgetWait(limit.limit, limit.period, cells, offset, now, cost);
  }
}

/** True when no amount of waiting lets `cost` through. */
export function exceedsCapacity(entry: CompiledLimit, cost: number): boolean {
  return cost > (entry.gcra === null ? entry.limit.limit : entry.gcra.burst);
}

/** Charges without checking and returns the mark a refund needs (NaN: not refundable). */
export function chargeLimit(entry: CompiledLimit, cells: number[], now: number, amount: number): number {
  const { limit, offset } = entry;
  switch (limit.kind) {
    case 'rate':
      gcraCharge(entry.gcra!, cells, offset, now, amount);
      return NaN;
    case 'window':
      return windowCharge(cells, offset, amount);
    case 'budget':
      return budgetCharge(cells, offset, amount);
  }
}

export function refundLimit(entry: CompiledLimit, cells: number[], mark: number, amount: number): void {
  const { limit, offset } = entry;
  if (limit.kind === 'window') windowRefund(cells, offset, mark, amount);
  else if (limit.kind === 'budget') budgetRefund(cells, offset, mark, amount);
}

export function limitState(entry: CompiledLimit, cells: readonly number[], now: number): LimitState {
  const { limit, offset } = entry;
  switch (limit.kind) {
    case 'rate': {
      // With a burst above the limit the bucket can hold more than `limit`; clients are
      // told at most `limit` so that remaining ≤ limit holds for every LimitState.
      const remaining = gcraRemaining(entry.gcra!, cells, offset, now, limit.limit);
      return {
        name: limit.name,
        kind: 'rate',
        limit: limit.limit,
        remaining,
        reset_at: gcraResetAt(entry.gcra!, cells, offset, now),
        window_ms: limit.period_ms,
      };
    }
    case 'window': {
      const remaining = limit.limit - windowCount(cells, offset);
      const reset_at = windowResetAt(limit.window_ms, cells, offset, now);
      return { name: limit.name, kind: 'window', limit: limit.limit, remaining: Math.max(remaining, 0), reset_at, window_ms: limit.window_ms };
    }
    case 'budget': {
      const start = cells[offset + 1]!;
      const end = nextPeriodStart(start, limit.period);
      const remaining = limit.limit - cells[offset]!;
      return { name: limit.name, kind: 'budget', limit: limit.limit, remaining: Math.max(remaining, 0), reset_at: end, window_ms: end - start };
    }
  }
}
