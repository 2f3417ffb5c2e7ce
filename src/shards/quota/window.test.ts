import { describe, expect, it } from 'vitest';
import { compileLimits, consume, newQuotaState, type QuotaState, snapshot } from './index.js';
import { slotLeavesAt, slotOf } from './window.js';

const set = compileLimits([{ name: 'w', kind: 'window', limit: 10, window_ms: 1000 }]); // slots of 100 ms
const use = (state: QuotaState, now: number, cost: number) => consume(set, state, now, { cost });

describe('sliding window slots', () => {
  it('numbers slots from epoch 0, exactly even when a slot is a fraction of a ms', () => {
    expect(slotOf(1999, 1000)).toBe(19);
    expect(slotOf(2000, 1000)).toBe(20);
    expect(slotOf(1002, 25)).toBe(400); // s = 2.5 ms: slot 400 is [1000, 1002.5)
    expect(slotOf(1003, 25)).toBe(401);
    expect(slotOf(1_740_000_000_001, 3)).toBe(5_800_000_000_003);
    expect(slotLeavesAt(400, 25)).toBe(1028); // (400 + 1)·2.5 + 25 = 1027.5
  });

  it('counts every slot that overlaps the last window, so it never over-admits', () => {
    let state = use(newQuotaState(set), 1950, 10).state; // slot 19, [1900, 2000)
    // At 2999 the window (1999, 2999] still meets slot 19.
    expect(use(state, 2999, 1)).toMatchObject({ allowed: false, retryAfterMs: 1 });
    expect(use(state, 2949, 1)).toMatchObject({ allowed: false, retryAfterMs: 51 });
    // At 3000 the window (2000, 3000] does not.
    state = use(state, 3000, 10).state; // slot 30, [3000, 3100)
    // The price of never over-admitting: slot 30 counts whole until 4100, though the
    // window (3000, 4000] no longer holds the units charged at 3000.
    expect(use(state, 4099, 1).allowed).toBe(false);
    expect(use(state, 4100, 1).allowed).toBe(true);
  });

  it('counts a slot that is a fraction of a ms until its end has left the window', () => {
    const narrow = compileLimits([{ name: 'w', kind: 'window', limit: 1, window_ms: 25 }]);
    const state = consume(narrow, newQuotaState(narrow), 1001, { cost: 1 }).state;
    expect(consume(narrow, state, 1027, { cost: 1 })).toMatchObject({ allowed: false, retryAfterMs: 1 });
    expect(consume(narrow, state, 1028, { cost: 1 }).allowed).toBe(true);
  });

  it('gives the retry time at which enough old slots leave, and when the window is empty', () => {
    let state = use(newQuotaState(set), 1000, 4).state; // slot 10
    state = use(state, 1500, 6).state; // slot 15
    const refused = use(state, 1600, 3);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBe(2100 - 1600); // slot 10 stops counting at 1100 + 1000
    expect(refused.limits[0]).toMatchObject({ remaining: 0, reset_at: 2600 });
    expect(use(state, 2099, 3).allowed).toBe(false);
    expect(use(state, 2100, 3).allowed).toBe(true);
    expect(use(state, 2100, 5).allowed).toBe(false);
    expect(snapshot(set, state, 2600)[0]).toMatchObject({ remaining: 10, reset_at: 2600 });
  });

  it('says when a cost can never fit', () => {
    const state = use(newQuotaState(set), 1000, 3).state;
    expect(use(state, 1000, 11)).toMatchObject({ allowed: false, exceedsCapacity: true, retryAfterMs: 1100 });
  });

  it('forgets everything after a long pause, and reports an empty window as reset now', () => {
    const state = use(newQuotaState(set), 1000, 10).state;
    expect(snapshot(set, state, 60_000)[0]).toMatchObject({ remaining: 10, reset_at: 60_000 });
    expect(use(state, 60_000, 10).allowed).toBe(true);
  });

  it('handles limits and costs up to 2^53-1', () => {
    const max = Number.MAX_SAFE_INTEGER;
    const huge = compileLimits([{ name: 'w', kind: 'window', limit: max, window_ms: 60_000 }]);
    let state = consume(huge, newQuotaState(huge), 0, { cost: max - 1 }).state;
    expect(consume(huge, state, 1, { cost: 2 }).allowed).toBe(false);
    state = consume(huge, state, 1, { cost: 1 }).state;
    expect(snapshot(huge, state, 2)[0]!.remaining).toBe(0);
    expect(consume(huge, state, 2, { cost: 1 }).allowed).toBe(false);
    expect(consume(huge, state, 60_000 + 6_000, { cost: max }).allowed).toBe(true);
  });
});
