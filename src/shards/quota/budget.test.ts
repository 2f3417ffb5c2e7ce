import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileLimits, consume, newQuotaState, nextPeriodStart, periodStart, snapshot } from './index.js';
import { periodOver } from './period.js';

const utc = (text: string) => Date.parse(text);
const DAY = 86_400_000;

describe('budget periods', () => {
  it('start at UTC midnight and on the first of the month', () => {
    expect(periodStart(utc('2024-02-29T23:59:59.999Z'), 'day')).toBe(utc('2024-02-29T00:00:00Z'));
    expect(periodStart(utc('2024-03-01T00:00:00Z'), 'day')).toBe(utc('2024-03-01T00:00:00Z'));
    expect(periodStart(utc('2024-02-29T12:00:00Z'), 'month')).toBe(utc('2024-02-01T00:00:00Z'));
    expect(periodStart(utc('2024-12-31T23:59:59.999Z'), 'month')).toBe(utc('2024-12-01T00:00:00Z'));
    expect(nextPeriodStart(utc('2024-02-01T00:00:00Z'), 'month')).toBe(utc('2024-03-01T00:00:00Z'));
    expect(nextPeriodStart(utc('2023-02-01T00:00:00Z'), 'month')).toBe(utc('2023-03-01T00:00:00Z'));
    expect(nextPeriodStart(utc('2023-12-01T00:00:00Z'), 'month')).toBe(utc('2024-01-01T00:00:00Z'));
    expect(nextPeriodStart(utc('2024-02-28T00:00:00Z'), 'day')).toBe(utc('2024-02-29T00:00:00Z'));
    expect(nextPeriodStart(utc('2024-02-29T00:00:00Z'), 'day')).toBe(utc('2024-03-01T00:00:00Z'));
  });

  it('agree with Date on the start of every month, from 1900 to 2400', () => {
    fc.assert(
      fc.property(fc.integer({ min: utc('1900-01-01T00:00:00Z'), max: utc('2400-12-31T23:59:59.999Z') }), (t) => {
        const date = new Date(t);
        expect(periodStart(t, 'month')).toBe(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
        expect(nextPeriodStart(periodStart(t, 'month'), 'month')).toBe(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1));
      }),
      { numRuns: 5000 },
    );
    for (let year = 1999; year <= 2101; year++) {
      for (let month = 0; month < 12; month++) {
        const first = Date.UTC(year, month, 1);
        expect(periodStart(first, 'month')).toBe(first);
        expect(periodStart(first - 1, 'month')).toBe(Date.UTC(year, month - 1, 1));
      }
    }
  });

  it('decide the end of a period like Date does, fast path included', () => {
    const time = fc.integer({ min: utc('1999-01-01T00:00:00Z'), max: utc('2101-01-01T00:00:00Z') });
    fc.assert(
      fc.property(time, fc.integer({ min: 0, max: 70 * DAY }), fc.constantFrom('day' as const, 'month' as const), (t, step, period) => {
        const start = periodStart(t, period);
        expect(periodOver(start, t + step, period)).toBe(periodStart(t + step, period) !== start);
      }),
      { numRuns: 3000 },
    );
  });

  it('reset usage at the month boundary and not before, Dec→Jan included', () => {
    const set = compileLimits([{ name: 'tokens', kind: 'budget', limit: 100, period: 'month' }]);
    let state = consume(set, newQuotaState(set), utc('2024-12-31T23:59:59Z'), { cost: 100 }).state;
    const refused = consume(set, state, utc('2024-12-31T23:59:59.500Z'), { cost: 1 });
    expect(refused).toMatchObject({ allowed: false, retryAfterMs: 500, exceedsCapacity: false, denied: 'tokens' });
    expect(refused.limits[0]).toMatchObject({ remaining: 0, reset_at: utc('2025-01-01T00:00:00Z'), window_ms: 31 * DAY });
    state = consume(set, state, utc('2025-01-01T00:00:00Z'), { cost: 100 }).state;
    expect(snapshot(set, state, utc('2025-01-15T00:00:00Z'))[0]).toMatchObject({ remaining: 0, reset_at: utc('2025-02-01T00:00:00Z') });
  });

  it('give February 29 days in a leap year and 28 otherwise', () => {
    const set = compileLimits([{ name: 'tokens', kind: 'budget', limit: 100, period: 'month' }]);
    let state = consume(set, newQuotaState(set), utc('2024-02-10T00:00:00Z'), { cost: 100 }).state;
    expect(snapshot(set, state, utc('2024-02-29T23:59:59.999Z'))[0]).toMatchObject({
      remaining: 0,
      reset_at: utc('2024-03-01T00:00:00Z'),
      window_ms: 29 * DAY,
    });
    expect(snapshot(set, state, utc('2024-03-01T00:00:00Z'))[0]).toMatchObject({ remaining: 100, window_ms: 31 * DAY });
    state = consume(set, newQuotaState(set), utc('2023-02-28T10:00:00Z'), { cost: 60 }).state;
    expect(snapshot(set, state, utc('2023-02-28T10:00:00Z'))[0]).toMatchObject({ remaining: 40, window_ms: 28 * DAY });
    expect(consume(set, state, utc('2023-02-28T23:59:59.999Z'), { cost: 41 })).toMatchObject({ allowed: false, retryAfterMs: 1 });
    expect(consume(set, state, utc('2023-03-01T00:00:00Z'), { cost: 100 }).allowed).toBe(true);
  });

  it('reset a daily budget at UTC midnight, on Feb 29 too', () => {
    const set = compileLimits([{ name: 'calls', kind: 'budget', limit: 5, period: 'day' }]);
    const state = consume(set, newQuotaState(set), utc('2024-02-29T23:00:00Z'), { cost: 5 }).state;
    expect(consume(set, state, utc('2024-02-29T23:59:59.999Z'), { cost: 1 })).toMatchObject({ allowed: false, retryAfterMs: 1 });
    expect(consume(set, state, utc('2024-03-01T00:00:00Z'), { cost: 5 }).allowed).toBe(true);
    expect(consume(set, state, utc('2024-02-29T10:00:00Z'), { cost: 6 })).toMatchObject({ allowed: false, exceedsCapacity: true });
  });

  it('count up to 2^53-1 without losing units', () => {
    const max = Number.MAX_SAFE_INTEGER;
    const set = compileLimits([{ name: 'tokens', kind: 'budget', limit: max, period: 'month' }]);
    const now = utc('2025-05-05T00:00:00Z');
    let state = consume(set, newQuotaState(set), now, { cost: max - 1 }).state;
    expect(consume(set, state, now, { cost: 2 }).allowed).toBe(false);
    expect(consume(set, state, now, { cost: max }).allowed).toBe(false);
    state = consume(set, state, now, { cost: 1 }).state;
    expect(snapshot(set, state, now)[0]!.remaining).toBe(0);
    expect(consume(set, state, now, { cost: 1 }).allowed).toBe(false);
  });
});
