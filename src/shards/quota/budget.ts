/**
 * A budget: an allowance per UTC calendar day or month, e.g. LLM tokens a month. Usage
 * resets when a decision finds that the period has turned.
 *
 * Cells: [used, period start].
 */
import { addSaturating } from './amounts.js';
import type { BudgetPeriod } from './limits.js';
import { nextPeriodStart, periodOver, periodStart } from './period.js';

export const BUDGET_CELLS = 2;

/** Starts a new period, with nothing used, once `now` has left the stored one. */
export function budgetAdvance(period: BudgetPeriod, cells: number[], o: number, now: number): void {
  if (!periodOver(cells[o + 1]!, now, period)) return;
  cells[o] = 0;
  cells[o + 1] = periodStart(now, period);
}

/** 0 when `cost` fits, else the ms until the next period (≥ 1). */
export function budgetWait(limit: number, period: BudgetPeriod, cells: readonly number[], o: number, now: number, cost: number): number {
  if (cost <= limit - cells[o]!) return 0;
  return Math.max(1, nextPeriodStart(cells[o + 1]!, period) - now);
}

/** Adds to the current period's usage and returns the period start, for refunds. */
export function budgetCharge(cells: number[], o: number, amount: number): number {
  cells[o] = addSaturating(cells[o]!, amount);
  return cells[o + 1]!;
}

/** Gives `amount` back only to the period it was charged in: a past period is closed. */
export function budgetRefund(cells: number[], o: number, start: number, amount: number): void {
  if (start !== cells[o + 1]) return;
  const used = cells[o]! - amount;
  cells[o] = Math.max(used, 0);
}
