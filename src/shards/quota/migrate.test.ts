import { describe, expect, it } from 'vitest';
import { compileLimits, consume, migrateQuotaState, newQuotaState, reserve, settle, snapshot } from './index.js';

const T0 = Date.parse('2025-06-01T12:00:00Z');
const set = compileLimits([
  { name: 'requests', kind: 'rate', limit: 10, period_ms: 1000 },
  { name: 'tokens', kind: 'budget', limit: 1000, period: 'day' },
  { name: 'tpm', kind: 'window', limit: 100, window_ms: 60_000 },
]);
/** The budget and the window alone, so that large costs pass. */
const counters = compileLimits([set.limits[1]!, set.limits[2]!]);

describe('migrating state across a tier edit', () => {
  it('carries counters by name and kind, whatever the order, and starts others fresh', () => {
    const state = consume(set, newQuotaState(set), T0, { cost: 9 }).state;
    const edited = compileLimits([
      { name: 'new', kind: 'window', limit: 3, window_ms: 1000 },
      { name: 'tokens', kind: 'budget', limit: 5000, period: 'day' },
      { name: 'requests', kind: 'window', limit: 50, window_ms: 1000 }, // same name, other kind
      { name: 'tpm', kind: 'window', limit: 10, window_ms: 60_000 }, // same window, lower limit
    ]);
    const moved = migrateQuotaState(set, state, edited);
    expect(snapshot(edited, moved, T0).map((l) => l.remaining)).toEqual([3, 4991, 50, 1]);
    expect(migrateQuotaState(set, state, set)).toBe(state);
  });

  it('moves holds with their limits, so a later settle still refunds exactly', () => {
    const held = reserve(set, newQuotaState(set), T0, { id: 'h', cost: 8, resource: 'default', ttlMs: 60_000 }).state;
    const edited = compileLimits([set.limits[2]!, set.limits[1]!]);
    const moved = migrateQuotaState(set, held, edited);
    expect(moved.holds?.[0]?.marks).toEqual([held.holds![0]!.marks[2], held.holds![0]!.marks[1]]);
    expect(settle(edited, moved, T0 + 10, { id: 'h', actual: 3 }).limits.map((l) => l.remaining)).toEqual([97, 997]);
  });

  it('moves holds between sets of the same limits in another order', () => {
    const held = reserve(counters, newQuotaState(counters), T0, { id: 'h', cost: 40, resource: 'default', ttlMs: 60_000 }).state;
    const edited = compileLimits([counters.limits[1]!, counters.limits[0]!]);
    const moved = migrateQuotaState(counters, held, edited);
    expect(settle(edited, moved, T0 + 10, { id: 'h', actual: 15 }).limits.map((l) => l.remaining)).toEqual([85, 985]);
  });

  it('keeps a rate limit\'s "full again" moment when its rate changes', () => {
    const state = consume(set, newQuotaState(set), T0, { cost: 10 }).state; // full again at T0 + 1000
    const edited = compileLimits([{ name: 'requests', kind: 'rate', limit: 100, period_ms: 1000, burst: 20 }]);
    const moved = migrateQuotaState(set, state, edited);
    expect(snapshot(edited, moved, T0)[0]).toMatchObject({ remaining: 0, reset_at: T0 + 1000 });
    expect(snapshot(edited, moved, T0 + 990)[0]).toMatchObject({ remaining: 19 });
  });

  it('never lets window usage leave earlier when the window is resized', () => {
    let state = consume(counters, newQuotaState(counters), T0, { cost: 60 }).state;
    state = consume(counters, state, T0 + 30_000, { cost: 30 }).state;
    for (const windowMs of [10_000, 60_000 * 7, 45_000]) {
      const edited = compileLimits([{ name: 'tpm', kind: 'window', limit: 100, window_ms: windowMs }]);
      const moved = migrateQuotaState(counters, state, edited);
      // All 90 units count until at least a new window after the last of them.
      expect(consume(edited, moved, T0 + 30_000, { cost: 11 }).allowed).toBe(false);
      expect(consume(edited, moved, T0 + 30_000 + windowMs - 1, { cost: 11 }).allowed).toBe(false);
      expect(consume(edited, moved, T0 + 30_000, { cost: 10 }).allowed).toBe(true);
      expect(snapshot(edited, moved, T0 + 30_000 + 2 * windowMs)[0]!.remaining).toBe(100);
    }
  });

  it('drops hold marks of a resized window: its slots mean other times now', () => {
    const held = reserve(counters, newQuotaState(counters), T0, { id: 'h', cost: 40, resource: 'default', ttlMs: 60_000 }).state;
    const edited = compileLimits([{ name: 'tpm', kind: 'window', limit: 100, window_ms: 30_000 }]);
    const moved = migrateQuotaState(counters, held, edited);
    expect(moved.holds?.[0]?.marks).toEqual([NaN]);
    expect(settle(edited, moved, T0 + 10, { id: 'h', actual: 0 }).limits[0]!.remaining).toBe(60);
  });
});
