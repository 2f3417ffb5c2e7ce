/** UTC calendar periods for budgets: a day starts at 00:00 UTC, a month on its 1st. */
import type { BudgetPeriod } from './limits.js';

const DAY_MS = 86_400_000;

export function periodStart(now: number, period: BudgetPeriod): number {
  if (period === 'day') return Math.floor(now / DAY_MS) * DAY_MS;
  const date = new Date(now);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
}

export function nextPeriodStart(start: number, period: BudgetPeriod): number {
  if (period === 'day') return start + DAY_MS;
  const date = new Date(start);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}
