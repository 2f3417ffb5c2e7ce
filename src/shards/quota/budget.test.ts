import { describe, expect, it } from 'vitest';
import { compileLimits, consume, newQuotaState, nextPeriodStart, periodStart, snapshot } from './index.js';

const utc = (text: string) => Date.parse(text);

describe('budget periods', () => {
  it('start at UTC midnight and on the first of the month', () => {
    expect(periodStart(utc('2024-02-29T23:59:59.999Z'), 'day')).toBe(utc('2024-02-29T00:00:00Z'));
    expect(periodStart(utc('2024-02-29T12:00:00Z'), 'month')).toBe(utc('2024-02-01T00:00:00Z'));
    expect(nextPeriodStart(utc('2024-02-01T00:00:00Z'), 'month')).toBe(utc('2024-03-01T00:00:00Z'));
    expect(nextPeriodStart(utc('2023-12-01T00:00:00Z'), 'month')).toBe(utc('2024-01-01T00:00:00Z'));
    expect(nextPeriodStart(utc('2024-02-28T00:00:00Z'), 'day')).toBe(utc('2024-02-29T00:00:00Z'));
  });

  it('resets usage at the boundary and not before', () => {
    const set = compileLimits([{ name: 'tokens', kind: 'budget', limit: 100, period: 'month' }]);
    let state = consume(set, newQuotaState(set), utc('2024-01-31T23:59:59Z'), { cost: 100, resource: 'default' }).state;
    const refused = consume(set, state, utc('2024-01-31T23:59:59.500Z'), { cost: 1, resource: 'default' });
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBe(500);
    expect(refused.limits[0]!.reset_at).toBe(utc('2024-02-01T00:00:00Z'));
    state = consume(set, state, utc('2024-02-01T00:00:00Z'), { cost: 100, resource: 'default' }).state;
    expect(snapshot(set, state, utc('2024-02-15T00:00:00Z'))[0]).toMatchObject({ remaining: 0, window_ms: 29 * 86_400_000 });
  });
});
