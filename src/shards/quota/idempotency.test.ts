import { describe, expect, it } from 'vitest';
import { findIdempotent, IDEMPOTENCY_TTL_MS, rememberIdempotent } from './idempotency.js';

const T0 = Date.parse('2025-06-01T12:00:00Z');

describe('idempotency memory', () => {
  it('finds an answer for 24 h after it was given, with its fingerprint', () => {
    const entries = rememberIdempotent(null, T0, 'a', 'cost=1', { ok: 1 });
    expect(findIdempotent(entries, T0 + IDEMPOTENCY_TTL_MS - 1, 'a')).toEqual({ key: 'a', fingerprint: 'cost=1', createdAt: T0, answer: { ok: 1 } });
    expect(findIdempotent(entries, T0 + IDEMPOTENCY_TTL_MS, 'a')).toBeUndefined();
    expect(findIdempotent(entries, T0, 'b')).toBeUndefined();
    expect(findIdempotent(null, T0, 'a')).toBeUndefined();
  });

  it('drops expired entries, then the oldest beyond `max`', () => {
    let entries = rememberIdempotent(null, T0, 'old', 'fp', 0);
    for (let i = 0; i < 10; i++) entries = rememberIdempotent(entries, T0 + IDEMPOTENCY_TTL_MS + i, `k${i}`, 'fp', i, 4);
    expect(entries.map((e) => e.key)).toEqual(['k6', 'k7', 'k8', 'k9']);
    entries = rememberIdempotent(entries, T0 + 2 * IDEMPOTENCY_TTL_MS + 7, 'new', 'fp', 1, 4);
    expect(entries.map((e) => e.key)).toEqual(['k8', 'k9', 'new']); // k7 is exactly 24 h old
  });

  it('replaces an entry for the same key and leaves its input alone', () => {
    const first = rememberIdempotent(null, T0, 'a', 'fp1', 1);
    const second = rememberIdempotent(first, T0 + 5, 'a', 'fp2', 2);
    expect(second).toEqual([{ key: 'a', fingerprint: 'fp2', createdAt: T0 + 5, answer: 2 }]);
    expect(first).toEqual([{ key: 'a', fingerprint: 'fp1', createdAt: T0, answer: 1 }]);
  });
});
