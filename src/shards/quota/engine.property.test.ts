/**
 * Property: whatever the sequence of consumes, reserves, settles, releases and clock steps,
 * no limit ever admits more than it allows. A log keeps what was admitted and when; a
 * settled hold counts as its actual cost at the time it was taken, a released or expired
 * hold as nothing.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applies, compileLimits, consume, newQuotaState, periodStart, release, reserve, settle, snapshot, type QuotaState } from './index.js';
import type { Limit } from './limits.js';

const resource = fc.constantFrom('default', 'a');
const limitArb: fc.Arbitrary<Omit<Limit, 'name'>> = fc.oneof(
  fc.record({ kind: fc.constant('rate' as const), limit: fc.integer({ min: 1, max: 20 }), period_ms: fc.integer({ min: 100, max: 5000 }), burst: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant('window' as const), limit: fc.integer({ min: 1, max: 30 }), window_ms: fc.integer({ min: 10, max: 5000 }) }),
  fc.record({ kind: fc.constant('budget' as const), limit: fc.integer({ min: 1, max: 100 }), period: fc.constantFrom('day' as const, 'month' as const) }),
).chain((limit) => fc.option(fc.constant('a'), { nil: undefined }).map((r) => (r === undefined ? limit : { ...limit, resource: r })));

type Op =
  | { op: 'consume'; cost: number; resource: string }
  | { op: 'reserve'; cost: number; resource: string; ttl: number }
  | { op: 'settle'; pick: number; fraction: number }
  | { op: 'release'; pick: number }
  | { op: 'step'; ms: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('consume' as const), cost: fc.integer({ min: 1, max: 10 }), resource }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('reserve' as const), cost: fc.integer({ min: 1, max: 10 }), resource, ttl: fc.integer({ min: 100, max: 5000 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('settle' as const), pick: fc.nat(), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat() }) },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant('step' as const), ms: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 40 * 86_400_000 })) }),
  },
);

interface Admitted {
  t: number;
  amount: number;
  resource: string;
  holdId?: string;
  expiresAt?: number;
}

describe('quota engine property', () => {
  it('never admits more than any limit allows, and remaining stays within [0, capacity]', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(limitArb, { minLength: 1, maxLength: 3, selector: (l) => l.kind }),
        fc.array(opArb, { minLength: 1, maxLength: 80 }),
        fc.integer({ min: Date.parse('2024-01-01T00:00:00Z'), max: Date.parse('2026-01-01T00:00:00Z') }),
        (shapes, ops, start) => {
          const limits = shapes.map((shape, i) => ({ ...shape, name: `l${i}` }) as Limit);
          const set = compileLimits(limits);
          let state: QuotaState = newQuotaState(set);
          let now = start;
          let holdCounter = 0;
          const log: Admitted[] = [];
          const open = () => log.filter((entry) => entry.holdId !== undefined && entry.expiresAt! > now && entry.amount > 0);
          for (const op of ops) {
            for (const entry of log) if (entry.holdId !== undefined && entry.expiresAt! <= now) entry.amount = 0;
            if (op.op === 'step') now += op.ms;
            else if (op.op === 'consume') {
              const decision = consume(set, state, now, op);
              state = decision.state;
              if (decision.allowed) log.push({ t: now, amount: op.cost, resource: op.resource });
            } else if (op.op === 'reserve') {
              const id = `h${holdCounter++}`;
              const decision = reserve(set, state, now, { id, cost: op.cost, resource: op.resource, ttlMs: op.ttl });
              state = decision.state;
              if (decision.allowed) log.push({ t: now, amount: op.cost, resource: op.resource, holdId: id, expiresAt: now + op.ttl });
            } else {
              const candidates = open();
              if (candidates.length === 0) continue;
              const entry = candidates[op.pick % candidates.length]!;
              if (op.op === 'settle') {
                const actual = Math.floor(entry.amount * op.fraction);
                const result = settle(set, state, now, { id: entry.holdId!, actual });
                expect(result.found).toBe(true);
                state = result.state;
                entry.amount = actual;
              } else {
                const result = release(set, state, now, entry.holdId!);
                expect(result.found).toBe(true);
                state = result.state;
                entry.amount = 0;
              }
              delete entry.holdId;
            }
            snapshot(set, state, now).forEach((limitState, i) => {
              const limit = limits[i]!;
              // A rate limit holds up to `burst` at once, which may exceed its per-period `limit`.
              const capacity = limit.kind === 'rate' ? Math.max(limit.limit, limit.burst ?? limit.limit) : limit.limit;
              expect(limitState.remaining).toBeGreaterThanOrEqual(0);
              expect(limitState.remaining).toBeLessThanOrEqual(capacity);
            });
          }
          for (const limit of limits) {
            const charged = log.filter((entry) => entry.amount > 0 && applies(limit, entry.resource));
            if (limit.kind === 'window') {
              for (const end of charged) {
                const total = charged.filter((e) => e.t > end.t - limit.window_ms && e.t <= end.t).reduce((sum, e) => sum + e.amount, 0);
                expect(total, `window ${JSON.stringify(limit)}`).toBeLessThanOrEqual(limit.limit);
              }
            } else if (limit.kind === 'rate') {
              const interval = limit.period_ms / limit.limit;
              for (let i = 0; i < charged.length; i++) {
                let total = 0;
                for (let j = i; j < charged.length; j++) {
                  total += charged[j]!.amount;
                  const allowance = limit.burst! + (charged[j]!.t - charged[i]!.t) / interval;
                  expect(total, `rate ${JSON.stringify(limit)}`).toBeLessThanOrEqual(allowance + 1e-6);
                }
              }
            } else {
              const byPeriod = new Map<number, number>();
              for (const e of charged) byPeriod.set(periodStart(e.t, limit.period), (byPeriod.get(periodStart(e.t, limit.period)) ?? 0) + e.amount);
              for (const total of byPeriod.values()) expect(total, `budget ${JSON.stringify(limit)}`).toBeLessThanOrEqual(limit.limit);
            }
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
