import { describe, expect, it } from 'vitest';
import { gcraParams, gcraRemaining, gcraResetAt, gcraTake } from './gcra.js';

const p = gcraParams({ name: 'r', kind: 'rate', limit: 600, period_ms: 60_000, burst: 50 });

describe('GCRA', () => {
  it('admits a burst of `burst` at once, then one per emission interval', () => {
    let tat = 0;
    const now = 1_000_000;
    for (let i = 0; i < 50; i++) {
      const outcome = gcraTake(p, tat, now, 1);
      expect(outcome.allowed).toBe(true);
      tat = outcome.tat;
    }
    const refused = gcraTake(p, tat, now, 1);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBe(100); // 60 000 ms / 600
    expect(gcraTake(p, tat, now + 99, 1).allowed).toBe(false);
    expect(gcraTake(p, tat, now + 100, 1).allowed).toBe(true);
  });

  it('reports remaining capacity and when the bucket is full again', () => {
    const now = 5_000;
    const { tat } = gcraTake(p, 0, now, 10);
    expect(gcraRemaining(p, tat, now)).toBe(40);
    expect(gcraResetAt(tat, now)).toBe(now + 1000);
    expect(gcraRemaining(p, tat, now + 1000)).toBe(50);
  });

  it('says when a cost can never fit', () => {
    expect(gcraTake(p, 0, 0, 51)).toMatchObject({ allowed: false, exceedsCapacity: true });
  });

  it('admits exactly-fitting costs with fractional intervals', () => {
    const thirds = gcraParams({ name: 'r', kind: 'rate', limit: 3, period_ms: 1000 });
    let tat = 0;
    for (let i = 0; i < 3; i++) tat = gcraTake(thirds, tat, 10_000, 1).tat;
    expect(gcraTake(thirds, tat, 10_000, 1).allowed).toBe(false);
    expect(gcraTake(thirds, tat, 10_000 + 1000 / 3, 1).allowed).toBe(true);
  });

  it('keeps precision for costs up to 2^53-1', () => {
    const huge = gcraParams({ name: 'r', kind: 'rate', limit: Number.MAX_SAFE_INTEGER, period_ms: 1000 });
    expect(gcraTake(huge, 0, 1, Number.MAX_SAFE_INTEGER).allowed).toBe(true);
  });
});
