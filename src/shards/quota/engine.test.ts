import { describe, expect, it } from 'vitest';
import {
  chargeText,
  compileLimits,
  consume,
  type Limit,
  MAX_HOLDS,
  migrateQuotaState,
  newQuotaState,
  type QuotaState,
  release,
  reserve,
  settle,
  snapshot,
  TOO_MANY_HOLDS,
} from './index.js';

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

describe('a request and its tokens', () => {
  // The default tiers' shape: requests without a resource, tokens on their own resource.
  const gateway = compileLimits([
    { name: 'requests', kind: 'rate', limit: 60, period_ms: 60_000, burst: 20 },
    { name: 'tokens', kind: 'budget', limit: 100_000, period: 'month', resource: 'tokens' },
  ]);
  const left = (state: QuotaState, now = T0) => remaining(gateway, state, now);

  it('charges cost to the request limit and the amount to the token budget, together', () => {
    const one = consume(gateway, newQuotaState(gateway), T0, { cost: 1, amounts: { tokens: 1500 } });
    expect(one).toMatchObject({ allowed: true });
    expect(one.limits.map((l) => [l.name, l.remaining])).toEqual([
      ['requests', 19],
      ['tokens', 98_500],
    ]);
    // Without an amount of tokens, the budget is not touched and not listed.
    const plain = consume(gateway, one.state, T0, { cost: 1 });
    expect(plain.limits.map((l) => l.name)).toEqual(['requests']);
    expect(left(plain.state)).toEqual([18, 98_500]);
    // An amount of 0 is the same as none.
    expect(consume(gateway, one.state, T0, { cost: 1, amounts: { tokens: 0 } }).limits.map((l) => l.name)).toEqual(['requests']);
  });

  it('refuses all of it when the tokens do not fit, and says so by name', () => {
    const nearlyOut = consume(gateway, newQuotaState(gateway), T0, { cost: 1, amounts: { tokens: 99_000 } }).state;
    const refused = consume(gateway, nearlyOut, T0 + 1, { cost: 1, amounts: { tokens: 1500 } });
    expect(refused).toMatchObject({ allowed: false, denied: 'tokens', exceedsCapacity: false });
    expect(refused.state).toBe(nearlyOut);
    // Nor is a request charged that the request limit refuses while tokens would fit.
    let busy = newQuotaState(gateway);
    for (let i = 0; i < 20; i++) busy = consume(gateway, busy, T0, { cost: 1 }).state;
    const noRequest = consume(gateway, busy, T0, { cost: 1, amounts: { tokens: 10 } });
    expect(noRequest).toMatchObject({ allowed: false, denied: 'requests' });
    expect(left(noRequest.state)).toEqual([0, 100_000]);
  });

  it('names the limit an amount can never fit, whichever refused first', () => {
    let busy = newQuotaState(gateway);
    for (let i = 0; i < 20; i++) busy = consume(gateway, busy, T0, { cost: 1 }).state;
    expect(consume(gateway, busy, T0, { cost: 1, amounts: { tokens: 100_001 } })).toMatchObject({ allowed: false, exceedsCapacity: true, denied: 'tokens' });
    expect(consume(gateway, busy, T0, { cost: 21, amounts: { tokens: 5 } })).toMatchObject({ allowed: false, exceedsCapacity: true, denied: 'requests' });
  });

  it('keeps the meaning of a request of one resource: cost goes to the limits naming it', () => {
    const legacy = consume(gateway, newQuotaState(gateway), T0, { cost: 5, resource: 'tokens' });
    expect(legacy.limits.map((l) => [l.name, l.remaining])).toEqual([
      ['requests', 15],
      ['tokens', 99_995],
    ]);
    expect(() => consume(gateway, newQuotaState(gateway), T0, { cost: 1, resource: 'tokens', amounts: { tokens: 5 } })).toThrow(/names "tokens"/);
    expect(() => consume(gateway, newQuotaState(gateway), T0, { cost: 1, amounts: { tokens: 1.5 } })).toThrow(RangeError);
  });

  it('holds per resource and settles each to its actual amount', () => {
    const held = reserve(gateway, newQuotaState(gateway), T0, { id: 'h', cost: 1, amounts: { tokens: 4000 }, ttlMs: 60_000 });
    expect(held.hold).toMatchObject({ cost: 1, resource: 'default', amounts: { tokens: 4000 } });
    expect(left(held.state)).toEqual([19, 96_000]);
    const settled = settle(gateway, held.state, T0 + 10, { id: 'h', amounts: { tokens: 1200 } });
    expect(settled.found).toBe(true);
    expect(settled.limits.map((l) => [l.name, l.remaining])).toEqual([
      ['requests', 19],
      ['tokens', 98_800],
    ]);
    // More than was held is charged, past the budget if need be.
    const over = settle(gateway, held.state, T0 + 10, { id: 'h', actual: 1, amounts: { tokens: 150_000 } });
    expect(left(over.state, T0 + 10)).toEqual([19, 0]);
  });

  it('will not guess what `actual` alone settles on a hold of several resources', () => {
    const held = reserve(gateway, newQuotaState(gateway), T0, { id: 'h', cost: 1, amounts: { tokens: 4000 }, ttlMs: 60_000 });
    const refused = settle(gateway, held.state, T0 + 10, { id: 'h', actual: 1200 });
    expect(refused).toMatchObject({ found: true, limits: [], refused: 'hold "h" holds "default" and "tokens": settle it with amounts' });
    expect(refused.state).toBe(held.state);
    // A hold of one resource (its cost also goes to the request limit, as before amounts).
    const single = reserve(gateway, newQuotaState(gateway), T0, { id: 's', cost: 15, resource: 'tokens', ttlMs: 60_000 });
    expect(left(single.state)).toEqual([5, 99_985]);
    // It settles by `actual`, or by naming its resource in amounts; GCRA is never refunded.
    expect(left(settle(gateway, single.state, T0, { id: 's', actual: 12 }).state)).toEqual([5, 99_988]);
    expect(left(settle(gateway, single.state, T0, { id: 's', amounts: { tokens: 12 } }).state)).toEqual([5, 99_988]);
    expect(settle(gateway, single.state, T0, { id: 's', actual: 1, amounts: { tokens: 12 } }).refused).toBe('actual (1) and amounts.tokens (12) disagree');
  });

  it('charges a resource the hold did not hold when the settlement names it', () => {
    const held = reserve(gateway, newQuotaState(gateway), T0, { id: 'h', cost: 1, ttlMs: 60_000 });
    const settled = settle(gateway, held.state, T0, { id: 'h', amounts: { tokens: 700 } });
    expect(settled.limits.map((l) => l.name)).toEqual(['requests', 'tokens']);
    expect(left(settled.state)).toEqual([19, 99_300]);
  });

  it('gives every held amount back on release or expiry', () => {
    const held = reserve(gateway, newQuotaState(gateway), T0, { id: 'h', cost: 1, amounts: { tokens: 4000 }, ttlMs: 1000 });
    expect(left(release(gateway, held.state, T0, 'h').state)).toEqual([19, 100_000]);
    expect(left(held.state, T0 + 1000)).toEqual([20, 100_000]);
  });
});

describe('holds across a tier edit', () => {
  it('refunds what a hold charged, not what its request would charge the edited limit', () => {
    const before = compileLimits([{ name: 'budget', kind: 'budget', limit: 100, period: 'month' }]);
    const after = compileLimits([{ name: 'budget', kind: 'budget', limit: 100, period: 'month', resource: 'tokens' }]);
    // Charged 1 (the cost: the budget had no resource), not the 90 tokens.
    let state = reserve(before, newQuotaState(before), T0, { id: 'h', cost: 1, amounts: { tokens: 90 }, ttlMs: 60_000 }).state;
    state = consume(before, state, T0, { cost: 98 }).state;
    expect(remaining(before, state, T0)).toEqual([1]);
    state = migrateQuotaState(before, state, after);
    // Settled at no tokens: the budget gives back the 1 it holds, not 90.
    const settled = settle(after, state, T0, { id: 'h', amounts: { tokens: 0 } });
    expect(remaining(after, settled.state, T0)).toEqual([2]);
    // And a hold from before the edit, released, gives back what it took.
    expect(remaining(after, release(after, state, T0, 'h').state, T0)).toEqual([2]);
  });
});

describe('the fingerprint of a charge', () => {
  it('tells every two different charges apart, and keeps the old text without amounts', () => {
    expect(chargeText({ cost: 3, resource: 'default' })).toBe('3:default');
    expect(chargeText({ cost: 3, amounts: { tokens: 0 } })).toBe('3:default');
    expect(chargeText({ cost: 1, resource: 'default:[["tokens",5]]' })).not.toBe(chargeText({ cost: 1, amounts: { tokens: 5 } }));
    expect(chargeText({ cost: 1, amounts: { a: 1, b: 2 } })).toBe(chargeText({ cost: 1, amounts: { b: 2, a: 1 } }));
  });
});

describe('reservations past the cap on holds', () => {
  it('say an amount can never fit before they say there are too many holds', () => {
    const tiny = compileLimits([{ name: 'tokens', kind: 'budget', limit: 1_000_000, period: 'month' }]);
    let state = newQuotaState(tiny);
    for (let i = 0; i < MAX_HOLDS; i++) state = reserve(tiny, state, T0, { id: `h${i}`, cost: 1, ttlMs: 5000 }).state;
    expect(reserve(tiny, state, T0, { id: 'big', cost: 2_000_000, ttlMs: 5000 })).toMatchObject({ allowed: false, exceedsCapacity: true, denied: 'tokens' });
    expect(reserve(tiny, state, T0, { id: 'small', cost: 1, ttlMs: 5000 })).toMatchObject({ allowed: false, denied: TOO_MANY_HOLDS });
  });
});
