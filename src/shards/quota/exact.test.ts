import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ceilQuotient, compareProducts } from './exact.js';

const int = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.maxSafeInteger(), fc.maxSafeNat(), fc.constant(Number.MAX_SAFE_INTEGER));
const sign = (value: bigint) => (value < 0n ? -1 : value > 0n ? 1 : 0);

describe('exact products', () => {
  it('compares a·b with c·d exactly for any safe integers', () => {
    fc.assert(
      fc.property(int, int, int, int, (a, b, c, d) => {
        expect(compareProducts(a, b, c, d)).toBe(sign(BigInt(a) * BigInt(b) - BigInt(c) * BigInt(d)));
      }),
      { numRuns: 2000 },
    );
  });

  it('tells apart products that round to the same float', () => {
    const max = Number.MAX_SAFE_INTEGER;
    // 5·(2^53−1) and 5·(2^53−2) differ by 5 but round to the same float.
    expect(5 * max).toBe(5 * (max - 1));
    expect(compareProducts(5, max, 5, max - 1)).toBe(1);
    expect(compareProducts(5, max - 1, max, 5)).toBe(-1);
    expect(compareProducts(max, max, max - 1, max + 1)).toBe(1);
  });

  it('finds the smallest n with a·b ≤ n·c', () => {
    fc.assert(
      fc.property(
        fc.maxSafeInteger(),
        fc.integer({ min: 1, max: 31_622_400_000 }),
        fc.maxSafeNat().filter((c) => c > 0),
        (a, b, c) => {
          const n = ceilQuotient(a, b, c);
          fc.pre(Number.isSafeInteger(n));
          const product = BigInt(a) * BigInt(b);
          expect(product <= BigInt(n) * BigInt(c)).toBe(true);
          expect(product <= BigInt(n - 1) * BigInt(c)).toBe(false);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
