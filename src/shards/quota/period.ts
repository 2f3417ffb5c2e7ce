/** UTC calendar periods for budgets: a day starts at 00:00 UTC, a month on its 1st. */
import type { BudgetPeriod } from './limits.js';

const DAY_MS = 86_400_000;

/** The shortest a period can be: a day, or February in a common year. */
const SHORTEST_MS: Record<BudgetPeriod, number> = { day: DAY_MS, month: 28 * DAY_MS };

export function periodStart(now: number, period: BudgetPeriod): number {
  if (period === 'day') return Math.floor(now / DAY_MS) * DAY_MS;
  const month = monthOf(now);
  return Date.UTC(Math.floor(month / 12), month % 12, 1);
}

/** The start of the period after the one containing `start`; Date.UTC rolls month 12 into January. */
export function nextPeriodStart(start: number, period: BudgetPeriod): number {
  if (period === 'day') return Math.floor(start / DAY_MS) * DAY_MS + DAY_MS;
  // Every answer about a monthly budget asks this, nearly always for the current month.
  if (start === lastMonthAsked) return lastMonthAnswer;
  const month = monthOf(start);
  const next = Date.UTC(Math.floor(month / 12), (month % 12) + 1, 1);
  lastMonthAsked = start;
  lastMonthAnswer = next;
  return next;
}

let lastMonthAsked = NaN;
let lastMonthAnswer = NaN;

/**
 * True once `now` has left the period that began at `start`. Decided by one subtraction
 * on all but the last days of a month, since this runs on every decision.
 */
export function periodOver(start: number, now: number, period: BudgetPeriod): boolean {
  if (now - start < SHORTEST_MS[period]) return false;
  return now >= nextPeriodStart(start, period);
}

/**
 * year·12 + month (0-based) of an instant, by Howard Hinnant's days-to-civil algorithm
 * (https://howardhinnant.github.io/date_algorithms.html#civil_from_days): the same answer
 * as `new Date(t).getUTCMonth()`, without allocating a Date on every decision.
 */
function monthOf(t: number): number {
  const z = Math.floor(t / DAY_MS) + 719_468; // days since 0000-03-01
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const marchBased = Math.floor((5 * dayOfYear + 2) / 153); // 0 = March … 11 = February
  const month = marchBased < 10 ? marchBased + 2 : marchBased - 10;
  const year = yearOfEra + era * 400 + (month < 2 ? 1 : 0);
  return year * 12 + month;
}
