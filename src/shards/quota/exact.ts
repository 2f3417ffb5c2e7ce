/**
 * Exact comparison of products of integers. GCRA compares quantities like units·P against
 * elapsed·L, whose products pass 2^53 (and so round) as soon as limits or idle times are
 * large. Dekker's TwoProduct splits a float product into its rounded value and the exact
 * rounding error, so two products compare exactly for any integers below 2^53 in
 * magnitude, with no BigInt and no allocation.
 */

/** 2^27 + 1: Veltkamp's constant for splitting a 53-bit significand into two halves. */
const SPLIT = 134_217_729;

/** a·b − fl(a·b), exactly. */
function productError(a: number, b: number, product: number): number {
  let t = SPLIT * a;
  const aHigh = t - (t - a);
  const aLow = a - aHigh;
  t = SPLIT * b;
  const bHigh = t - (t - b);
  const bLow = b - bHigh;
  return aHigh * bHigh - product + aHigh * bLow + aLow * bHigh + aLow * bLow;
}

/** The sign of a·b − c·d. */
export function compareProducts(a: number, b: number, c: number, d: number): number {
  const p = a * b;
  const q = c * d;
  // Rounding is monotonic, so different rounded products order the exact ones.
  if (p !== q) return p < q ? -1 : 1;
  const e = productError(a, b, p);
  const f = productError(c, d, q);
  return e < f ? -1 : e > f ? 1 : 0;
}

/** The smallest integer n with a·b ≤ n·c, for c > 0 (exact while n is a safe integer). */
export function ceilQuotient(a: number, b: number, c: number): number {
  let n = Math.ceil((a * b) / c);
  if (!Number.isSafeInteger(n)) return n;
  while (compareProducts(n - 1, c, a, b) >= 0) n--;
  while (compareProducts(n, c, a, b) < 0) n++;
  return n;
}
