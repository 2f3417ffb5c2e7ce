import { describe, expect, it } from 'vitest';
import {
  compileLimits,
  consume,
  type Limit,
  newQuotaState,
  quotaStateFromJSON,
  quotaStateToJSON,
  rememberIdempotent,
  reserve,
  settle,
  snapshot,
} from './index.js';

const limits: Limit[] = [
  { name: 'requests', kind: 'rate', limit: 7, period_ms: 1000 },
  { name: 'tokens', kind: 'budget', limit: 1000, period: 'day' },
  { name: 'images', kind: 'window', limit: 20, window_ms: 60_000, resource: 'images' },
];
const set = compileLimits(limits);
const T0 = Date.parse('2025-06-01T12:00:00Z');
const roundTrip = (json: unknown) => JSON.parse(JSON.stringify(json)) as unknown;

describe('quota state as JSON', () => {
  it('round-trips cells, holds and idempotency answers, keyed by limit name', () => {
    let state = consume(set, newQuotaState(set), T0, { cost: 5, resource: 'images' }).state;
    state = reserve(set, state, T0, { id: 'h', cost: 2, resource: 'images', ttlMs: 60_000 }).state;
    state = { ...state, idem: rememberIdempotent(null, T0, 'key', 'fp', { allowed: true }) };
    const json = roundTrip(quotaStateToJSON(set, state));
    expect(json).toMatchObject({
      v: 1,
      limits: {
        requests: { kind: 'rate', anchor: T0 + 1000, units: 0, tat: T0 + 1000, limit: 7, period_ms: 1000 },
        tokens: { kind: 'budget', used: 7, period_start: Date.parse('2025-06-01T00:00:00Z') },
        images: { kind: 'window', window_ms: 60_000, newest: (T0 * 10) / 60_000 },
      },
      holds: [
        {
          id: 'h',
          cost: 2,
          resource: 'images',
          created_at: T0,
          expires_at: T0 + 60_000,
          marks: { tokens: Date.parse('2025-06-01T00:00:00Z'), images: (T0 * 10) / 60_000 },
        },
      ],
      idem: [{ key: 'key', fingerprint: 'fp', created_at: T0, answer: { allowed: true } }],
    });
    const restored = quotaStateFromJSON(set, json);
    expect(restored).toEqual(state);
    // The restored hold still refunds exactly.
    expect(settle(set, restored, T0 + 1, { id: 'h', actual: 0 }).limits.map((l) => l.remaining)).toEqual([0, 995, 15]);
  });

  it('round-trips a hold of several resources, and keeps only whole amounts of other resources', () => {
    const tokens = compileLimits([...limits, { name: 'llm', kind: 'budget', limit: 10_000, period: 'month', resource: 'tokens' }]);
    const held = reserve(tokens, newQuotaState(tokens), T0, { id: 'h', cost: 1, amounts: { tokens: 4000, images: 0 }, ttlMs: 60_000 }).state;
    const json = roundTrip(quotaStateToJSON(tokens, held)) as { holds: { amounts: unknown }[] };
    expect(json.holds[0]!.amounts).toEqual({ tokens: 4000 });
    expect(quotaStateFromJSON(tokens, json)).toEqual(held);
    json.holds[0]!.amounts = { tokens: 1.5, default: 3, images: 2, ['__proto__']: 5, x: '7' };
    expect(quotaStateFromJSON(tokens, JSON.parse(JSON.stringify(json))).holds![0]!.amounts).toEqual(
      // A resource may be named "__proto__": it stays a member, not a prototype.
      Object.fromEntries([
        ['images', 2],
        ['__proto__', 5],
      ]),
    );
    json.holds[0]!.amounts = 'garbage';
    expect(quotaStateFromJSON(tokens, json).holds![0]!.amounts).toBeNull();
  });

  it('reads garbage as fresh state without throwing', () => {
    const fresh = newQuotaState(set);
    const garbage: unknown[] = [
      null,
      42,
      'x',
      [],
      { limits: null },
      { limits: { tokens: { kind: 'budget', used: 'many', period_start: 0 } } },
      { limits: { tokens: { kind: 'budget', used: -5, period_start: 0 } } },
      { limits: { tokens: { kind: 'rate', tat: 5 } } },
      { limits: { requests: { kind: 'rate', tat: 'soon' } } },
      { limits: { requests: { kind: 'rate', anchor: 1, units: 9, limit: 7, period_ms: 1000 } } },
      { limits: { images: { kind: 'window', newest: 1, slots: [1, 2] } } },
      { limits: { images: { kind: 'window', newest: 1.5, slots: new Array(11).fill(0) } } },
      { limits: { images: { kind: 'window', newest: 1, slots: new Array(11).fill(-1) } } },
      { holds: [{}, null, 7, { id: 'x', cost: 0, resource: 'a', created_at: 1, expires_at: 2 }], idem: 'no' },
      { idem: [{ key: 1 }, null] },
      { limits: { __proto__: { kind: 'budget', used: 5, period_start: 0 } } },
    ];
    for (const json of garbage) expect(quotaStateFromJSON(set, json)).toEqual(fresh);
  });

  it('keeps a limit named like an Object.prototype member', () => {
    const odd = compileLimits([
      { name: '__proto__', kind: 'budget', limit: 10, period: 'day' },
      { name: 'constructor', kind: 'budget', limit: 10, period: 'day' },
    ]);
    const state = consume(odd, newQuotaState(odd), T0, { cost: 4 }).state;
    const restored = quotaStateFromJSON(odd, roundTrip(quotaStateToJSON(odd, state)));
    expect(snapshot(odd, restored, T0).map((l) => l.remaining)).toEqual([6, 6]);
    expect(quotaStateFromJSON(odd, { limits: {} })).toEqual(newQuotaState(odd));
  });

  it('reads the first stored form (a float tat, no window_ms, camelCase idempotency)', () => {
    const legacy = {
      v: 1,
      limits: {
        requests: { kind: 'rate', tat: T0 + 500.4 },
        tokens: { kind: 'budget', used: 10, period_start: Date.parse('2025-06-01T00:00:00Z'), period_end: Date.parse('2025-06-02T00:00:00Z') },
      },
      idem: [{ key: 'k', fingerprint: 'f', createdAt: T0, answer: 1 }],
    };
    const state = quotaStateFromJSON(set, legacy);
    expect(snapshot(set, state, T0).map((l) => l.remaining)).toEqual([3, 990, 20]);
    expect(state.idem).toEqual([{ key: 'k', fingerprint: 'f', createdAt: T0, answer: 1 }]);
  });

  it('converts counters stored under other parameters of the same limit', () => {
    const state = consume(set, newQuotaState(set), T0, { cost: 5, resource: 'images' }).state;
    const json = roundTrip(quotaStateToJSON(set, state));
    const edited = compileLimits([
      { name: 'requests', kind: 'rate', limit: 70, period_ms: 10_000 },
      { name: 'images', kind: 'window', limit: 20, window_ms: 600_000, resource: 'images' },
    ]);
    const restored = quotaStateFromJSON(edited, json);
    // The rate bucket is full again when it was (T0 + 715 ms); the window keeps its 5 units.
    expect(snapshot(edited, restored, T0).map((l) => [l.remaining, l.reset_at])).toEqual([
      [64, T0 + 715],
      [15, Math.ceil((T0 + 6000) / 60_000) * 60_000 + 600_000],
    ]);
  });
});
