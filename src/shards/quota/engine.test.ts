import { describe, expect, it } from 'vitest';
import { compileLimits, consume, type Limit, MAX_HOLDS, newQuotaState, type QuotaState, release, reserve, settle, snapshot, TOO_MANY_HOLDS } from './index.js';

const limits: Limit[] = [
  { name: 'requests', kind: 'rate', limit: 10, period_ms: 1000 },
  { name: 'tokens', kind: 'budget', limit: 1000, period: 'day' },
  { name: 'images', kind: 'window', limit: 2, window_ms: 60_000, resource: 'images' },
];
const set = compileLimits(limits);
const T0 = Date.parse('2025-06-01T12:00:00Z');
const remaining = (s: typeof set, state: QuotaState, now: number) => snapshot(s, state, now).map((l) => l.remaining);

describe('consume', () => {
  it('is all or nothing across the limits that apply', () => {
    const first = consume(set, newQuotaState(set), T0, { cost: 5 });
    expect(first).toMatchObject({ allowed: true, retryAfterMs: 0, exceedsCapacity: false });
    expect(first.limits.map((l) => l.name)).toEqual(['requests', 'tokens']);
    // The budget has room for 995, the rate limit only for 5: refused, nothing charged.
    const refused = consume(set, first.state, T0, { cost: 6 });
    expect(refused).toMatchObject({ allowed: false, denied: 'requests', retryAfterMs: 100, exceedsCapacity: false });
    expect(refused.state).toBe(first.state);
    expect(remaining(set, refused.state, T0)).toEqual([5, 995, 2]);
  });

  it('waits for the slowest limit, and names the first that refused', () => {
    const two = compileLimits([
      { name: 'fast', kind: 'rate', limit: 1, period_ms: 100 },
      { name: 'slow', kind: 'window', limit: 1, window_ms: 10_000 },
    ]);
    const state = consume(two, newQuotaState(two), T0, { cost: 1 }).state;
    expect(consume(two, state, T0, { cost: 1 })).toMatchObject({ allowed: false, denied: 'fast', retryAfterMs: 11_000 });
    expect(consume(two, state, T0 + 200, { cost: 1 })).toMatchObject({ allowed: false, denied: 'slow', retryAfterMs: 10_800 });
  });

  it('says when the cost can never fit', () => {
    expect(consume(set, newQuotaState(set), T0, { cost: 11 })).toMatchObject({ allowed: false, exceedsCapacity: true, denied: 'requests' });
    expect(consume(set, newQuotaState(set), T0, { cost: 3, resource: 'images' })).toMatchObject({ allowed: false, exceedsCapacity: true, denied: 'images' });
  });

  it('applies resource limits only to their resource; no resource means "default"', () => {
    let state = newQuotaState(set);
    state = consume(set, state, T0, { cost: 1, resource: 'images' }).state;
    state = consume(set, state, T0, { cost: 1, resource: 'images' }).state;
    expect(consume(set, state, T0, { cost: 1, resource: 'images' })).toMatchObject({ allowed: false, denied: 'images' });
    expect(consume(set, state, T0, { cost: 1, resource: 'text' }).allowed).toBe(true);
    expect(consume(set, state, T0, { cost: 1 }).limits.map((l) => l.name)).toEqual(['requests', 'tokens']);
    expect(consume(set, state, T0, { cost: 1, resource: 'default' }).limits.map((l) => l.name)).toEqual(['requests', 'tokens']);
  });

  it('never changes its input state', () => {
    const state = reserve(set, newQuotaState(set), T0, { id: 'h', cost: 2, resource: 'images', ttlMs: 1000 }).state;
    const before = JSON.stringify(state);
    consume(set, state, T0 + 5000, { cost: 3 });
    settle(set, state, T0 + 10, { id: 'h', actual: 1 });
    snapshot(set, state, T0 + 5000);
    expect(JSON.stringify(state)).toBe(before);
  });

  it('refuses amounts that are not whole units rather than poison the counters', () => {
    for (const cost of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) expect(() => consume(set, newQuotaState(set), T0, { cost })).toThrow(RangeError);
    expect(() => settle(set, newQuotaState(set), T0, { id: 'x', actual: -1 })).toThrow(RangeError);
  });
});

describe('reservations', () => {
  const big = compileLimits([
    { name: 'tokens', kind: 'budget', limit: 1000, period: 'day' },
    { name: 'tpm', kind: 'window', limit: 500, window_ms: 60_000 },
    { name: 'rps', kind: 'rate', limit: 1000, period_ms: 1000 },
  ]);

  it('holds the cost as a consume would, then settles to the actual: refund', () => {
    const held = reserve(big, newQuotaState(big), T0, { id: 'r1', cost: 400, resource: 'default', ttlMs: 30_000 });
    expect(held).toMatchObject({ allowed: true, hold: { id: 'r1', cost: 400, createdAt: T0, expiresAt: T0 + 30_000 } });
    expect(held.limits.map((l) => l.remaining)).toEqual([600, 100, 600]);
    const refunded = settle(big, held.state, T0 + 100, { id: 'r1', actual: 150 });
    expect(refunded.found).toBe(true);
    // Budget and window get 250 back; the rate limit does not (it drained 100 meanwhile).
    expect(refunded.limits.map((l) => l.remaining)).toEqual([850, 350, 700]);
    expect(refunded.state.holds).toBeNull();
    expect(settle(big, refunded.state, T0 + 100, { id: 'r1', actual: 1 }).found).toBe(false);
  });

  it('charges an extra even past the limits: the work already happened', () => {
    const held = reserve(big, newQuotaState(big), T0, { id: 'r2', cost: 100, resource: 'default', ttlMs: 30_000 });
    const extra = settle(big, held.state, T0, { id: 'r2', actual: 1200 });
    expect(extra.limits.map((l) => l.remaining)).toEqual([0, 0, 0]);
    // 1100 more units of rate: 1.2 s of backlog behind a 1 s bucket, all of it charged.
    expect(extra.limits[2]!.reset_at).toBe(T0 + 1200);
    expect(consume(big, extra.state, T0 + 1000, { cost: 1 })).toMatchObject({ allowed: false, denied: 'tokens' });
    const rateOnly = compileLimits([big.limits[2]!]);
    const over = settle(rateOnly, reserve(rateOnly, newQuotaState(rateOnly), T0, { id: 'r', cost: 100, resource: 'default', ttlMs: 1000 }).state, T0, {
      id: 'r',
      actual: 1200,
    });
    expect(consume(rateOnly, over.state, T0 + 200, { cost: 1 })).toMatchObject({ allowed: false, retryAfterMs: 1 });
    expect(consume(rateOnly, over.state, T0 + 201, { cost: 1 }).allowed).toBe(true);
  });

  it('releases a hold, and an expired hold releases itself', () => {
    const held = reserve(big, newQuotaState(big), T0, { id: 'r1', cost: 300, resource: 'default', ttlMs: 10_000 });
    const released = release(big, held.state, T0 + 1, 'r1');
    expect(released.found).toBe(true);
    expect(remaining(big, released.state, T0 + 1).slice(0, 2)).toEqual([1000, 500]);
    expect(remaining(big, held.state, T0 + 9_999).slice(0, 2)).toEqual([700, 200]);
    expect(remaining(big, held.state, T0 + 10_000).slice(0, 2)).toEqual([1000, 500]);
    expect(release(big, held.state, T0 + 10_000, 'r1').found).toBe(false);
    // The expiry is applied by whichever operation comes next, and kept in its state.
    const after = consume(big, held.state, T0 + 10_000, { cost: 1 });
    expect(after.state.holds).toBeNull();
    expect(after.limits.map((l) => l.remaining).slice(0, 2)).toEqual([999, 499]);
  });

  it('does not refund a budget into a later period, nor a window slot that left', () => {
    const late = Date.parse('2025-06-01T23:59:30Z');
    const held = reserve(big, newQuotaState(big), late, { id: 'r', cost: 300, resource: 'default', ttlMs: 3_600_000 });
    const nextDay = consume(big, held.state, late + 40_000, { cost: 50 }).state;
    const settled = settle(big, nextDay, late + 40_000, { id: 'r', actual: 0 });
    expect(settled.limits.map((l) => l.remaining).slice(0, 2)).toEqual([950, 500 - 50]);
    const windowLeft = settle(big, nextDay, late + 66_000, { id: 'r', actual: 0 });
    expect(windowLeft.limits.map((l) => l.remaining).slice(0, 2)).toEqual([950, 450]);
  });

  it('refuses a hold that does not fit, and charges nothing', () => {
    const refused = reserve(big, newQuotaState(big), T0, { id: 'r', cost: 501, resource: 'default', ttlMs: 1000 });
    expect(refused).toMatchObject({ allowed: false, denied: 'tpm', exceedsCapacity: true });
    expect(refused.hold).toBeUndefined();
    expect(refused.state.holds).toBeNull();
  });

  it(`caps open holds at ${MAX_HOLDS} per user`, () => {
    const tiny = compileLimits([{ name: 'tokens', kind: 'budget', limit: 1_000_000, period: 'month' }]);
    let state = newQuotaState(tiny);
    for (let i = 0; i < MAX_HOLDS; i++) state = reserve(tiny, state, T0, { id: `h${i}`, cost: 1, resource: 'default', ttlMs: 5000 + i }).state;
    const refused = reserve(tiny, state, T0 + 1, { id: 'one-more', cost: 1, resource: 'default', ttlMs: 5000 });
    expect(refused).toMatchObject({ allowed: false, denied: TOO_MANY_HOLDS, retryAfterMs: 4999, exceedsCapacity: false });
    expect(refused.state).toBe(state);
    expect(reserve(tiny, state, T0 + 5000, { id: 'one-more', cost: 1, resource: 'default', ttlMs: 5000 }).allowed).toBe(true);
    expect(() => reserve(tiny, state, T0, { id: 'h7', cost: 1, resource: 'default', ttlMs: 1 })).toThrow(/already open/);
  });
});
