import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LimitState } from './quota/limits.js';
import { iso, limitStateView, limitsJson } from './views.js';

describe('iso', () => {
  it('renders as Date#toISOString does, for any time', () => {
    const year10000 = Date.UTC(10_000, 0, 1);
    const ms = fc.oneof(
      fc.integer({ min: 0, max: year10000 + 1_000_000 }),
      fc.integer({ min: -8.64e15, max: 8.64e15 }),
      fc.constantFrom(0, 59_999, 60_000, Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2028, 1, 29), year10000 - 1, year10000),
    );
    fc.assert(
      fc.property(ms, (value) => {
        expect(iso(value)).toBe(new Date(value).toISOString());
      }),
      { numRuns: 20_000 },
    );
  });

  it('renders fractional milliseconds as Date does (truncated)', () => {
    expect(iso(1_000.7)).toBe(new Date(1_000.7).toISOString());
  });
});

describe('limitsJson', () => {
  it('is JSON.stringify of the limit views', () => {
    const state: fc.Arbitrary<LimitState> = fc.record({
      name: fc.string({ minLength: 1, maxLength: 16 }),
      kind: fc.constantFrom('rate', 'window', 'budget'),
      limit: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      remaining: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      reset_at: fc.integer({ min: 0, max: 4_102_444_800_000 }),
      window_ms: fc.integer({ min: 1, max: 1e12 }),
    });
    fc.assert(
      fc.property(fc.array(state, { maxLength: 5 }), (limits) => {
        expect(limitsJson(limits)).toBe(JSON.stringify(limits.map(limitStateView)));
      }),
      { numRuns: 2_000 },
    );
  });
});
