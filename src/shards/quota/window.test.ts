import { describe, expect, it } from 'vitest';
import { compileLimits, consume, newQuotaState, snapshot } from './index.js';

const set = compileLimits([{ name: 'w', kind: 'window', limit: 10, window_ms: 1000 }]);

describe('sliding window', () => {
  it('counts every slot that overlaps the last window, so it never over-admits', () => {
    let state = newQuotaState(set);
    // 10 units at t=1950 (slot 19, covering 1900–2000).
    state = consume(set, state, 1950, { cost: 10, resource: 'default' }).state;
    // At t=2949 slot 19 still overlaps (1949, 2949]: refused.
    expect(consume(set, state, 2949, { cost: 1, resource: 'default' }).allowed).toBe(false);
    // At t=3000 slot 19 ends before the window starts (2000, 3000]: admitted.
    expect(consume(set, state, 3000, { cost: 1, resource: 'default' }).allowed).toBe(true);
  });

  it('gives the retry time at which enough old slots leave', () => {
    let state = newQuotaState(set);
    state = consume(set, state, 1000, { cost: 4, resource: 'default' }).state; // slot 10
    state = consume(set, state, 1500, { cost: 6, resource: 'default' }).state; // slot 15
    const refused = consume(set, state, 1600, { cost: 3, resource: 'default' });
    expect(refused.allowed).toBe(false);
    // Slot 10 (ends 1100) stops counting at 1100 + 1000.
    expect(refused.retryAfterMs).toBe(2100 - 1600);
    expect(refused.limits[0]).toMatchObject({ remaining: 0, reset_at: 1600 + 1000 - 0 });
  });

  it('forgets everything after a long pause', () => {
    let state = newQuotaState(set);
    state = consume(set, state, 1000, { cost: 10, resource: 'default' }).state;
    expect(snapshot(set, state, 60_000)[0]).toMatchObject({ remaining: 10 });
  });
});
