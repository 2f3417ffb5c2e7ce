/**
 * `quietAt`: from the time it names on, a state decides exactly as a fresh one would, which is
 * what lets the database delete a limiter's row then (limiterActor.ts). Checked on random
 * limit sets and random histories of consumes, holds, settles and clock steps.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileLimits, consume, type Limit, newQuotaState, type QuotaState, quietAt, release, reserve, settle, snapshot } from './index.js';

const limitArb: fc.Arbitrary<Limit> = fc.oneof(
  fc.record({
    name: fc.constant('r'),
    kind: fc.constant('rate' as const),
    limit: fc.integer({ min: 1, max: 20 }),
    period_ms: fc.integer({ min: 1, max: 5000 }),
    burst: fc.integer({ min: 1, max: 25 }),
  }),
  fc.record({
    name: fc.constant('w'),
    kind: fc.constant('window' as const),
    limit: fc.integer({ min: 1, max: 30 }),
    window_ms: fc.integer({ min: 1, max: 5000 }),
  }),
  fc.record({ name: fc.constant('b'), kind: fc.constant('budget' as const), limit: fc.integer({ min: 1, max: 60 }), period: fc.constant('day' as const) }),
);
const setArb = fc.uniqueArray(limitArb, { minLength: 1, maxLength: 3, selector: (limit) => limit.name });

type Op =
  | { op: 'consume'; cost: number }
  | { op: 'reserve'; cost: number; ttl: number }
  | { op: 'settle'; pick: number; actual: number }
  | { op: 'wait'; ms: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('consume' as const), cost: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ op: fc.constant('reserve' as const), cost: fc.integer({ min: 1, max: 12 }), ttl: fc.integer({ min: 1, max: 20_000 }) }),
  fc.record({ op: fc.constant('settle' as const), pick: fc.nat(), actual: fc.integer({ min: 0, max: 14 }) }),
  fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 3000 }) }),
);

describe('quietAt', () => {
  it('names a time from which the state decides like a fresh one', () => {
    fc.assert(
      fc.property(setArb, fc.array(opArb, { maxLength: 40 }), fc.integer({ min: 0, max: 100_000 }), (limits, ops, after) => {
        const set = compileLimits(limits);
        let state: QuotaState = newQuotaState(set);
        let now = Date.UTC(2026, 11, 1, 10, 0, 0);
        const holds: string[] = [];
        for (const op of ops) {
          if (op.op === 'wait') now += op.ms;
          else if (op.op === 'consume') state = consume(set, state, now, { cost: op.cost }).state;
          else if (op.op === 'reserve') {
            const id = `h${holds.length}`;
            const result = reserve(set, state, now, { id, cost: op.cost, ttlMs: op.ttl });
            state = result.state;
            if (result.allowed) holds.push(id);
          } else if (holds.length > 0) {
            const id = holds[op.pick % holds.length]!;
            state = (op.actual === 0 ? release(set, state, now, id) : settle(set, state, now, { id, actual: op.actual })).state;
          }
        }
        const quiet = quietAt(set, state, now);
        expect(quiet).toBeGreaterThanOrEqual(now);
        const at = quiet + after;
        const fresh = newQuotaState(set);
        expect(snapshot(set, state, at)).toEqual(snapshot(set, fresh, at));
        // No hold is left open to settle: a deleted row loses nothing a caller could still ask for.
        for (const id of holds) expect(settle(set, state, at, { id, actual: 1 }).found).toBe(false);
        for (const cost of [1, 5, 30]) {
          const mine = consume(set, state, at, { cost });
          const theirs = consume(set, fresh, at, { cost });
          expect({ allowed: mine.allowed, limits: mine.limits, retryAfterMs: mine.retryAfterMs }).toEqual({
            allowed: theirs.allowed,
            limits: theirs.limits,
            retryAfterMs: theirs.retryAfterMs,
          });
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('is now for a state that was never charged', () => {
    const set = compileLimits([{ name: 'b', kind: 'budget', limit: 5, period: 'month' }]);
    expect(quietAt(set, newQuotaState(set), 1_000)).toBe(1_000);
  });
});
