/**
 * Amounts are whole units from 1 to 2^53−1. Sums are compared as `b > limit − a`, never
 * `a + b > limit`, and stored sums saturate at 2^53−1: past that a float stops counting
 * single units, and an extra charged past a limit must not wrap a counter into nonsense.
 */
const MAX_AMOUNT = Number.MAX_SAFE_INTEGER;

export function addSaturating(a: number, b: number): number {
  return b > MAX_AMOUNT - a ? MAX_AMOUNT : a + b;
}

/** Guards the pure core against NaN or fractions, which would poison a user's counters for good. */
export function assertAmount(what: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${what} must be an integer from ${min} to 2^53-1, got ${value}`);
}
