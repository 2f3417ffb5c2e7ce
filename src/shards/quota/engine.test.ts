import { describe, expect, it } from 'vitest';
import {
  compileLimits,
  consume,
  findIdempotent,
  migrateQuotaState,
  newQuotaState,
  quotaStateFromJSON,
  quotaStateToJSON,
  release,
  rememberIdempotent,
  reserve,
  settle,
  snapshot,
  validateLimits,
} from './index.js';
import type { Limit } from './limits.js';

const limits: Limit[] = [
  { name: 'requests', kind: 'rate', limit: 10, period_ms: 1000 },
  { name: 'tokens', kind: 'budget', limit: 1000, period: 'day' },
  { name: 'images', kind: 'window', limit: 2, window_ms: 60_000, resource: 'images' },
];
const set = compileLimits(limits);
const T0 = Date.parse('2025-06-01T12:00:00Z');
const tokens = (state: ReturnType<typeof newQuotaState>, now = T0) => snapshot(set, state, now).find((l) => l.name === 'tokens')!.remaining;

describe('consume', () => {
  it('is all or nothing across the limits that apply', () => {
    const first = consume(set, newQuotaState(set), T0, { cost: 5, resource: 'default' });
    expect(first.allowed).toBe(true);
    expect(first.limits.map((l) => l.name)).toEqual(['requests', 'tokens']);
    // The budget has room for 995, the rate limit has 5 left: refused, nothing charged.
    const refused = consume(set, first.state, T0, { cost: 6, resource: 'default' });
    expect(refused).toMatchObject({ allowed: false, denied: 'requests' });
    expect(refused.state).toBe(first.state);
    expect(tokens(refused.state)).toBe(995);
  });

  it('applies resource limits only to their resource', () => {
    let state = newQuotaState(set);
    state = consume(set, state, T0, { cost: 1, resource: 'images' }).state;
    state = consume(set, state, T0, { cost: 1, resource: 'images' }).state;
    expect(consume(set, state, T0, { cost: 1, resource: 'images' })).toMatchObject({ allowed: false, denied: 'images' });
    expect(consume(set, state, T0, { cost: 1, resource: 'text' }).allowed).toBe(true);
  });

  it('never changes its input state', () => {
    const state = newQuotaState(set);
    const before = JSON.stringify(state);
    consume(set, state, T0, { cost: 3, resource: 'default' });
    expect(JSON.stringify(state)).toBe(before);
  });
});

describe('reservations', () => {
  const big = compileLimits([{ name: 'tokens', kind: 'budget', limit: 1000, period: 'day' }, { name: 'tpm', kind: 'window', limit: 500, window_ms: 60_000 }]);

  it('holds the cost, then settles to the actual: refund and extra', () => {
    const held = reserve(big, newQuotaState(big), T0, { id: 'r1', cost: 400, resource: 'default', ttlMs: 30_000 });
    expect(held.allowed).toBe(true);
    expect(held.limits.map((l) => l.remaining)).toEqual([600, 100]);
    const refunded = settle(big, held.state, T0 + 1000, { id: 'r1', actual: 150 });
    expect(refunded.found).toBe(true);
    expect(refunded.limits.map((l) => l.remaining)).toEqual([850, 350]);
    expect(refunded.state.holds).toBeNull();
    const again = reserve(big, refunded.state, T0 + 2000, { id: 'r2', cost: 100, resource: 'default', ttlMs: 30_000 });
    const extra = settle(big, again.state, T0 + 3000, { id: 'r2', actual: 500 });
    // The extra is charged even past the window's limit: the work already happened.
    expect(extra.limits.map((l) => l.remaining)).toEqual([350, 0]);
    expect(settle(big, extra.state, T0 + 3000, { id: 'r2', actual: 1 }).found).toBe(false);
  });

  it('releases a hold, and an expired hold releases itself', () => {
    const held = reserve(big, newQuotaState(big), T0, { id: 'r1', cost: 300, resource: 'default', ttlMs: 10_000 });
    expect(release(big, held.state, T0 + 1, 'r1').found).toBe(true);
    expect(snapshot(big, release(big, held.state, T0 + 1, 'r1').state, T0 + 1)[0]!.remaining).toBe(1000);
    expect(snapshot(big, held.state, T0 + 9_999)[0]!.remaining).toBe(700);
    expect(snapshot(big, held.state, T0 + 10_000)[0]!.remaining).toBe(1000);
    expect(release(big, held.state, T0 + 10_000, 'r1').found).toBe(false);
  });

  it('refuses a hold that does not fit', () => {
    expect(reserve(big, newQuotaState(big), T0, { id: 'r', cost: 501, resource: 'default', ttlMs: 1000 }).allowed).toBe(false);
  });

  it('does not refund a budget into a later period', () => {
    const held = reserve(big, newQuotaState(big), Date.parse('2025-06-01T23:59:00Z'), { id: 'r', cost: 300, resource: 'default', ttlMs: 3_600_000 });
    const settled = settle(big, held.state, Date.parse('2025-06-02T00:01:00Z'), { id: 'r', actual: 0 });
    expect(settled.limits[0]!.remaining).toBe(1000);
  });
});

describe('idempotency memory', () => {
  it('finds answers for 24 h and keeps at most `max`', () => {
    let entries = rememberIdempotent(null, T0, 'a', 'fp', { ok: 1 });
    expect(findIdempotent(entries, T0 + 86_399_999, 'a')?.answer).toEqual({ ok: 1 });
    expect(findIdempotent(entries, T0 + 86_400_000, 'a')).toBeUndefined();
    for (let i = 0; i < 10; i++) entries = rememberIdempotent(entries, T0, `k${i}`, 'fp', i, 4);
    expect(entries.map((e) => e.key)).toEqual(['k6', 'k7', 'k8', 'k9']);
  });
});

describe('state across tier edits and storage', () => {
  it('round-trips through JSON, holds and idempotency included', () => {
    let state = consume(set, newQuotaState(set), T0, { cost: 7, resource: 'images' }).state;
    state = reserve(set, state, T0, { id: 'h', cost: 3, resource: 'default', ttlMs: 60_000 }).state;
    state = { ...state, idem: rememberIdempotent(null, T0, 'key', 'fp', { allowed: true }) };
    const restored = quotaStateFromJSON(set, JSON.parse(JSON.stringify(quotaStateToJSON(set, state))));
    expect(restored.cells).toEqual(state.cells);
    expect(restored.holds).toEqual(state.holds);
    expect(restored.idem).toEqual(state.idem);
  });

  it('reads garbage as fresh state without throwing', () => {
    for (const garbage of [null, 42, 'x', { limits: { tokens: { kind: 'budget', used: 'many' } } }, { holds: [{}], idem: 'no' }]) {
      expect(quotaStateFromJSON(set, garbage).cells).toEqual(newQuotaState(set).cells);
    }
  });

  it('carries counters by name when limits change, and starts new ones fresh', () => {
    const state = consume(set, newQuotaState(set), T0, { cost: 9, resource: 'default' }).state;
    const edited = compileLimits([
      { name: 'tokens', kind: 'budget', limit: 5000, period: 'day' },
      { name: 'new', kind: 'window', limit: 3, window_ms: 1000 },
    ]);
    const moved = migrateQuotaState(set, state, edited);
    expect(snapshot(edited, moved, T0).map((l) => l.remaining)).toEqual([4991, 3]);
  });

  it('validates limits', () => {
    expect(validateLimits(limits)).toBeNull();
    expect(validateLimits([limits[0]!, limits[0]!])).toMatch(/twice/);
    expect(validateLimits([{ name: 'x', kind: 'rate', limit: 0, period_ms: 1 }])).toMatch(/limit/);
    expect(validateLimits([{ name: 'bad name', kind: 'budget', limit: 1, period: 'day' }])).toMatch(/name/);
  });
});
