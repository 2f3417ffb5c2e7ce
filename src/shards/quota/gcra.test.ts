import { describe, expect, it } from 'vitest';
import { type GcraParams, gcraCharge, gcraParams, gcraRemaining, gcraResetAt, gcraWait } from './gcra.js';
import type { RateLimit } from './limits.js';

const NOW = Date.parse('2025-03-01T12:00:00Z');
const rate = (limit: number, period_ms: number, burst?: number): GcraParams =>
  gcraParams({ name: 'r', kind: 'rate', limit, period_ms, ...(burst === undefined ? {} : { burst }) } as RateLimit);

/** Charges when the cost conforms; returns the wait (0 = admitted). */
function take(p: GcraParams, cells: number[], now: number, cost: number): number {
  const wait = gcraWait(p, cells, 0, now, cost);
  if (wait === 0) gcraCharge(p, cells, 0, now, cost);
  return wait;
}

describe('GCRA', () => {
  it('admits a burst of `burst` at once, then one per emission interval', () => {
    const p = rate(600, 60_000, 50); // T = 100 ms
    const cells = [0, 0];
    for (let i = 0; i < 50; i++) expect(take(p, cells, NOW, 1)).toBe(0);
    expect(take(p, cells, NOW, 1)).toBe(100);
    expect(take(p, cells, NOW + 99, 1)).toBe(1);
    expect(take(p, cells, NOW + 100, 1)).toBe(0);
    // Steady state: exactly one every 100 ms, for a long time.
    for (let t = NOW + 200; t < NOW + 600_000; t += 100) {
      expect(take(p, cells, t, 1)).toBe(0);
      expect(take(p, cells, t, 1)).toBe(100);
    }
  });

  it('reports remaining capacity and when the bucket is full again', () => {
    const p = rate(600, 60_000, 50);
    const cells = [0, 0];
    take(p, cells, NOW, 10);
    expect(gcraRemaining(p, cells, 0, NOW, 600)).toBe(40);
    expect(gcraResetAt(p, cells, 0, NOW)).toBe(NOW + 1000);
    expect(gcraRemaining(p, cells, 0, NOW + 99, 600)).toBe(40);
    expect(gcraRemaining(p, cells, 0, NOW + 100, 600)).toBe(41);
    expect(gcraRemaining(p, cells, 0, NOW + 1000, 600)).toBe(50);
    expect(gcraResetAt(p, cells, 0, NOW + 5000)).toBe(NOW + 5000);
  });

  it('never reports more than the cap it is given (a burst above the limit)', () => {
    const p = rate(10, 1000, 30);
    expect(gcraRemaining(p, [0, 0], 0, NOW, 10)).toBe(10);
    const cells = [0, 0];
    expect(take(p, cells, NOW, 30)).toBe(0);
    expect(gcraRemaining(p, cells, 0, NOW, 10)).toBe(0);
  });

  it('says how long until a cost above the burst could be tried (it never fits)', () => {
    const p = rate(600, 60_000, 50);
    expect(gcraWait(p, [0, 0], 0, NOW, 51)).toBe(1);
    const cells = [0, 0];
    take(p, cells, NOW, 20);
    expect(gcraWait(p, cells, 0, NOW, 51)).toBe(2000);
  });

  it('admits exactly-fitting costs with fractional intervals at real timestamps', () => {
    for (const limit of [3, 6, 7, 9, 11, 13]) {
      const p = rate(limit, 1000);
      const cells = [0, 0];
      for (let second = 0; second < 1000; second++) {
        const now = NOW + second * 1000;
        for (let i = 0; i < limit; i++) expect(take(p, cells, now, 1)).toBe(0);
        expect(take(p, cells, now, 1)).toBeGreaterThan(0);
      }
    }
  });

  it('waits to the millisecond with fractional intervals', () => {
    const p = rate(7, 1000, 1); // T = 142.857… ms
    const cells = [0, 0];
    expect(take(p, cells, NOW, 1)).toBe(0);
    expect(take(p, cells, NOW, 1)).toBe(143);
    expect(take(p, cells, NOW + 142, 1)).toBe(1);
    expect(take(p, cells, NOW + 143, 1)).toBe(0);
    // Two units take exactly 2000/7 = 285.71 ms: the next fits 286 ms after the first.
    expect(take(p, cells, NOW + 285, 1)).toBe(1);
    expect(take(p, cells, NOW + 286, 1)).toBe(0);
  });

  it('still counts single units when the interval is far below a millisecond', () => {
    const p = rate(1_000_000_000, 60_000, 10); // T = 60 ns
    const cells = [0, 0];
    for (let i = 0; i < 10; i++) expect(take(p, cells, NOW, 1)).toBe(0);
    expect(take(p, cells, NOW, 1)).toBe(1);
    // 1 ms later 16 666 units have drained: the bucket is full again, 10 units and no more.
    for (let i = 0; i < 10; i++) expect(take(p, cells, NOW + 1, 1)).toBe(0);
    expect(take(p, cells, NOW + 1, 1)).toBe(1);
  });

  it('is exact for costs and limits up to 2^53-1', () => {
    const max = Number.MAX_SAFE_INTEGER;
    const p = rate(max, 1000);
    const cells = [0, 0];
    expect(take(p, cells, NOW, max)).toBe(0);
    expect(take(p, cells, NOW, 1)).toBe(1);
    expect(gcraRemaining(p, cells, 0, NOW, max)).toBe(0);
    expect(gcraResetAt(p, cells, 0, NOW)).toBe(NOW + 1000);
    // After 1 ms, floor((2^53−1)/1000) units have drained, not one more.
    const drained = Math.floor(max / 1000);
    expect(gcraRemaining(p, cells, 0, NOW + 1, max)).toBe(drained);
    expect(take(p, cells, NOW + 1, drained + 1)).toBe(1);
    expect(take(p, cells, NOW + 1, drained)).toBe(0);
    expect(take(p, cells, NOW + 1, 1)).toBe(1);

    const yearly = rate(3, 31_622_400_000, 100_000); // T = 122 days, a deep bucket
    const deep = [0, 0];
    expect(take(yearly, deep, NOW, 99_999)).toBe(0);
    expect(take(yearly, deep, NOW, 2)).toBe(10_540_800_000);
    expect(take(yearly, deep, NOW, 1)).toBe(0);
    expect(take(yearly, deep, NOW, 1)).toBe(10_540_800_000);
    expect(gcraResetAt(yearly, deep, 0, NOW)).toBe(NOW + 100_000 * 10_540_800_000);
  });
});
