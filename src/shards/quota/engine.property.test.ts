/**
 * Properties of the engine under random sequences of consumes, reserves, settles, releases
 * and clock steps (small, large, and onto UTC day and month boundaries):
 *
 * 1. Safety: no limit admits more than it allows. A log keeps what was admitted and when:
 *    a settled hold counts as its actual cost at the time it was taken, a released or
 *    expired hold as nothing. When settles may exceed their holds, the excess over any
 *    limit must come only from those extras (charged past the limit on purpose).
 * 2. Agreement with a reference model that keeps every charge as a (time, amount) record
 *    per limit and recomputes each decision from the records: the engine's ring, period
 *    and two-cell GCRA must decide, count and time resets exactly as it does.
 * 3. A refusal charges nothing, and its retryAfterMs is exact to the ms.
 * 4. Every LimitState has 0 ≤ remaining ≤ limit; state survives JSON.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  applies,
  compileLimits,
  consume,
  type Decision,
  type Limit,
  type LimitSet,
  type LimitState,
  newQuotaState,
  nextPeriodStart,
  periodStart,
  type QuotaState,
  quotaStateFromJSON,
  quotaStateToJSON,
  release,
  reserve,
  settle,
  snapshot,
} from './index.js';

// ---- the reference model ---------------------------------------------------------------

interface Charge {
  t: number;
  amount: number;
}

interface RefHold {
  cost: number;
  resource: string;
  expiresAt: number;
  /** Per limit, the index of its record in that limit's list, or -1. */
  records: number[];
}

const slot = (t: number, windowMs: number) => Math.floor((t * 10) / windowMs);

class Reference {
  constructor(
    readonly limits: readonly Limit[],
    readonly records: Charge[][] = limits.map(() => []),
    readonly holds = new Map<string, RefHold>(),
  ) {}

  clone(): Reference {
    return new Reference(
      this.limits,
      this.records.map((list) => list.map((r) => ({ ...r }))),
      new Map(this.holds),
    );
  }

  expire(now: number): void {
    for (const [id, hold] of this.holds) if (hold.expiresAt <= now) this.settle(id, 0, now);
  }

  /** Admits and charges, or returns null; records the charges' indices for a hold. */
  take(now: number, cost: number, resource: string): number[] | null {
    if (this.limits.some((limit, i) => applies(limit, resource) && !this.fits(i, now, cost))) return null;
    return this.limits.map((limit, i) => (applies(limit, resource) ? this.records[i]!.push({ t: now, amount: cost }) - 1 : -1));
  }

  settle(id: string, actual: number, now: number): void {
    const hold = this.holds.get(id)!;
    this.holds.delete(id);
    this.limits.forEach((limit, i) => {
      if (!applies(limit, hold.resource)) return;
      if (actual > hold.cost) this.records[i]!.push({ t: now, amount: actual - hold.cost });
      const record = this.records[i]![hold.records[i]!]!;
      const stillCounted =
        (limit.kind === 'window' && slot(record.t, limit.window_ms) >= slot(now, limit.window_ms) - 10) ||
        (limit.kind === 'budget' && periodStart(record.t, limit.period) === periodStart(now, limit.period));
      if (actual < hold.cost && stillCounted) record.amount -= hold.cost - actual;
    });
  }

  fits(i: number, now: number, cost: number): boolean {
    const limit = this.limits[i]!;
    if (limit.kind === 'rate') {
      const burst = limit.burst ?? limit.limit;
      return cost <= burst && this.backlog(i, now) + cost * limit.period_ms <= burst * limit.period_ms;
    }
    return this.used(i, now) + cost <= limit.limit;
  }

  /** GCRA replayed from the records, in ms·L so that it is exact. */
  backlog(i: number, now: number): number {
    const limit = this.limits[i] as Extract<Limit, { kind: 'rate' }>;
    let tat = -Infinity;
    for (const r of this.records[i]!) tat = Math.max(tat, r.t * limit.limit) + r.amount * limit.period_ms;
    return Math.max(0, tat - now * limit.limit);
  }

  used(i: number, now: number): number {
    const limit = this.limits[i]!;
    let sum = 0;
    for (const r of this.records[i]!) {
      if (limit.kind === 'window' && slot(r.t, limit.window_ms) >= slot(now, limit.window_ms) - 10) sum += r.amount;
      if (limit.kind === 'budget' && periodStart(r.t, limit.period) === periodStart(now, limit.period)) sum += r.amount;
    }
    return sum;
  }

  state(i: number, now: number): Pick<LimitState, 'remaining' | 'reset_at'> {
    const limit = this.limits[i]!;
    if (limit.kind === 'rate') {
      const burst = limit.burst ?? limit.limit;
      const backlog = this.backlog(i, now);
      const free = Math.floor((burst * limit.period_ms - backlog) / limit.period_ms);
      return { remaining: Math.max(0, Math.min(free, limit.limit, burst)), reset_at: now + Math.ceil(backlog / limit.limit) };
    }
    const remaining = Math.max(0, limit.limit - this.used(i, now));
    if (limit.kind === 'budget') return { remaining, reset_at: nextPeriodStart(periodStart(now, limit.period), limit.period) };
    const newest = Math.max(
      -Infinity,
      ...this.records[i]!.filter((r) => r.amount > 0 && slot(r.t, limit.window_ms) >= slot(now, limit.window_ms) - 10).map((r) => slot(r.t, limit.window_ms)),
    );
    return { remaining, reset_at: newest === -Infinity ? now : Math.max(now, Math.ceil(((newest + 11) * limit.window_ms) / 10)) };
  }

  snapshot(now: number): Pick<LimitState, 'remaining' | 'reset_at'>[] {
    const copy = this.clone();
    copy.expire(now);
    return this.limits.map((_, i) => copy.state(i, now));
  }
}

// ---- random limit sets and operations --------------------------------------------------

const resourceArb = fc.constantFrom<string | undefined>(undefined, 'default', 'a');
const limitArb: fc.Arbitrary<Omit<Limit, 'name'>> = fc
  .oneof(
    fc.record(
      {
        kind: fc.constant('rate' as const),
        limit: fc.integer({ min: 1, max: 20 }),
        period_ms: fc.integer({ min: 1, max: 5000 }),
        burst: fc.integer({ min: 1, max: 25 }),
      },
      { requiredKeys: ['kind', 'limit', 'period_ms'] },
    ),
    fc.record({
      kind: fc.constant('window' as const),
      limit: fc.integer({ min: 1, max: 30 }),
      window_ms: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 5000 })),
    }),
    fc.record({ kind: fc.constant('budget' as const), limit: fc.integer({ min: 1, max: 60 }), period: fc.constantFrom('day' as const, 'month' as const) }),
  )
  .chain((limit) => fc.option(fc.constant('a'), { nil: undefined }).map((resource) => (resource === undefined ? limit : { ...limit, resource })));

type Op =
  | { op: 'consume'; cost: number; resource: string | undefined }
  | { op: 'reserve'; cost: number; resource: string | undefined; ttl: number }
  | { op: 'settle'; pick: number; fraction: number; extra: number }
  | { op: 'release'; pick: number }
  | { op: 'step'; ms: number }
  | { op: 'boundary'; period: 'day' | 'month'; offset: number }
  | { op: 'expiry'; pick: number; offset: number }
  | { op: 'scaled'; pick: number; factor: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('consume' as const), cost: fc.integer({ min: 1, max: 12 }), resource: resourceArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('reserve' as const),
      cost: fc.integer({ min: 1, max: 12 }),
      resource: resourceArb,
      ttl: fc.oneof(fc.integer({ min: 1, max: 6000 }), fc.integer({ min: 1, max: 3 * 86_400_000 })),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('settle' as const),
      pick: fc.nat(),
      fraction: fc.double({ min: 0, max: 1, noNaN: true }),
      extra: fc.integer({ min: 0, max: 15 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat() }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('step' as const),
      ms: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 6000 }),
        fc.integer({ min: 0, max: 40 * 86_400_000 }),
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('boundary' as const),
      period: fc.constantFrom('day' as const, 'month' as const),
      offset: fc.integer({ min: -3, max: 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('expiry' as const), pick: fc.nat(), offset: fc.integer({ min: -1, max: 0 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('scaled' as const), pick: fc.nat(), factor: fc.double({ min: 0, max: 2.5, noNaN: true }) }) },
);

/** A limit's own time scale, so that steps land within a few windows or periods of it. */
function timescale(limit: Limit): number {
  return limit.kind === 'window' ? limit.window_ms : limit.kind === 'rate' ? limit.period_ms : 86_400_000;
}

// ---- the run ---------------------------------------------------------------------------

/** What the safety log keeps: a settled hold counts as `actual` at the hold's time. */
interface Admitted {
  t: number;
  amount: number;
  resource: string;
  /** The part of `amount` a settle charged above its hold. */
  extra: number;
  hold?: { id: string; expiresAt: number; open: boolean };
}

function run(limits: Limit[], ops: Op[], start: number, extras: boolean): void {
  const set = compileLimits(limits);
  const reference = new Reference(limits);
  let state: QuotaState = newQuotaState(set);
  let now = start;
  let holds = 0;
  const log: Admitted[] = [];
  const admitted = (cost: number, resource: string | undefined): Admitted => ({ t: now, amount: cost, resource: resource ?? 'default', extra: 0 });
  for (const op of ops) {
    if (op.op === 'step') now += op.ms;
    else if (op.op === 'boundary') now = Math.max(now, nextPeriodStart(periodStart(now, op.period), op.period) + op.offset);
    else if (op.op === 'scaled') now += Math.ceil(op.factor * timescale(limits[op.pick % limits.length]!));
    else if (op.op === 'expiry') {
      // To the moment an open hold expires, or just before.
      const open = log.filter((entry) => entry.hold?.open === true);
      const entry = open[op.pick % Math.max(1, open.length)];
      if (entry !== undefined) now = Math.max(now, entry.hold!.expiresAt + op.offset);
    } else {
      for (const entry of log) if (entry.hold?.open === true && entry.hold.expiresAt <= now) [entry.amount, entry.hold.open] = [0, false];
      reference.expire(now);
      if (op.op === 'consume') {
        const decision = consume(set, state, now, { cost: op.cost, resource: op.resource });
        expectSameDecision(decision, reference, now, op.cost, op.resource);
        if (decision.allowed) log.push(admitted(op.cost, op.resource));
        else checkRefusal(set, state, decision, now, op.cost, op.resource);
        state = decision.state;
      } else if (op.op === 'reserve') {
        const id = `h${holds++}`;
        const decision = reserve(set, state, now, { id, cost: op.cost, resource: op.resource, ttlMs: op.ttl });
        const records = expectSameDecision(decision, reference, now, op.cost, op.resource);
        if (records !== null) reference.holds.set(id, { cost: op.cost, resource: op.resource ?? 'default', expiresAt: now + op.ttl, records });
        if (decision.allowed) log.push({ ...admitted(op.cost, op.resource), hold: { id, expiresAt: now + op.ttl, open: true } });
        else checkRefusal(set, state, decision, now, op.cost, op.resource);
        state = decision.state;
      } else {
        const open = log.filter((entry) => entry.hold?.open === true);
        const entry = open[op.pick % Math.max(1, open.length)];
        if (entry === undefined) {
          const missing = settle(set, state, now, { id: 'nobody', actual: 0 });
          expect(missing.found).toBe(false);
          state = missing.state;
        } else {
          const id = entry.hold!.id;
          const actual = op.op === 'release' ? 0 : extras ? entry.amount + op.extra : Math.floor(entry.amount * op.fraction);
          const result = op.op === 'release' ? release(set, state, now, id) : settle(set, state, now, { id, actual });
          expect(result.found).toBe(true);
          state = result.state;
          reference.settle(id, actual, now);
          entry.hold!.open = false;
          entry.extra = Math.max(0, actual - entry.amount);
          entry.amount = actual;
        }
      }
    }
    checkStates(set, state, now, reference);
  }
  expect(quotaStateFromJSON(set, JSON.parse(JSON.stringify(quotaStateToJSON(set, state))))).toEqual(state);
  for (const limit of limits)
    checkSafety(
      limit,
      log.filter((entry) => entry.amount > 0 && applies(limit, entry.resource)),
    );
}

/** The engine admits exactly when the reference does, and refuses naming the first limit that does not fit. */
function expectSameDecision(decision: Decision, reference: Reference, now: number, cost: number, resource: string | undefined): number[] | null {
  const r = resource ?? 'default';
  const refusing = reference.limits.findIndex((limit, i) => applies(limit, r) && !reference.fits(i, now, cost));
  expect(decision.allowed).toBe(refusing < 0);
  if (refusing >= 0) expect(decision.denied).toBe(reference.limits[refusing]!.name);
  return decision.allowed ? reference.take(now, cost, r) : null;
}

/** Every LimitState is within [0, limit], never resets in the past, and matches the reference. */
function checkStates(set: LimitSet, state: QuotaState, now: number, reference: Reference): void {
  const states = snapshot(set, state, now);
  const expected = reference.snapshot(now);
  states.forEach(({ name, remaining, limit, reset_at }, i) => {
    // Plain comparisons first: expect() on every step of every run would dominate the time.
    if (!Number.isSafeInteger(remaining) || remaining < 0 || remaining > limit || reset_at < now)
      expect.fail(`${name} at ${now}: remaining ${remaining} of ${limit}, reset ${reset_at}`);
    if (remaining !== expected[i]!.remaining || reset_at !== expected[i]!.reset_at) expect({ remaining, reset_at }, `${name} at ${now}`).toEqual(expected[i]);
  });
}

/** A refusal charges nothing, and the same request fits at exactly now + retryAfterMs. */
function checkRefusal(set: LimitSet, before: QuotaState, decision: Decision, now: number, cost: number, resource: string | undefined): void {
  expect(snapshot(set, decision.state, now)).toEqual(snapshot(set, before, now));
  expect(decision.retryAfterMs).toBeGreaterThanOrEqual(1);
  if (decision.exceedsCapacity) return;
  expect(consume(set, decision.state, now + decision.retryAfterMs, { cost, resource }).allowed).toBe(true);
  // Without holds that might expire meanwhile, a ms earlier is still too early.
  if (decision.state.holds === null && decision.retryAfterMs > 1) {
    expect(consume(set, decision.state, now + decision.retryAfterMs - 1, { cost, resource }).allowed).toBe(false);
  }
}

/** The admitted total beyond the allowance in a span may only be made of extras from that span. */
function checkSafety(limit: Limit, charged: Admitted[]): void {
  const sum = (entries: Admitted[]) => entries.reduce<[number, number]>(([total, extra], e) => [total + e.amount, extra + e.extra], [0, 0]);
  const what = JSON.stringify(limit);
  if (limit.kind === 'window') {
    // The busiest interval of length window_ms ends at some charge.
    for (const end of charged) {
      const [total, extra] = sum(charged.filter((e) => e.t > end.t - limit.window_ms && e.t <= end.t));
      expect(total - extra, `window ${what} ending ${end.t}`).toBeLessThanOrEqual(limit.limit);
    }
  } else if (limit.kind === 'rate') {
    // In any [a, b]: at most burst + (b − a)/T; in integers, total·P ≤ burst·P + (b − a)·L.
    const burst = limit.burst ?? limit.limit;
    for (let i = 0; i < charged.length; i++) {
      let admitted = 0;
      for (let j = i; j < charged.length; j++) {
        admitted += charged[j]!.amount - charged[j]!.extra;
        const span = charged[j]!.t - charged[i]!.t;
        if (admitted * limit.period_ms > burst * limit.period_ms + span * limit.limit) expect.fail(`rate ${what}: ${admitted} admitted in ${span} ms`);
      }
    }
  } else {
    const periods = new Map<number, Admitted[]>();
    for (const e of charged) periods.set(periodStart(e.t, limit.period), [...(periods.get(periodStart(e.t, limit.period)) ?? []), e]);
    for (const entries of periods.values()) {
      const [total, extra] = sum(entries);
      expect(total - extra, `budget ${what}`).toBeLessThanOrEqual(limit.limit);
    }
  }
}

const setArb = fc.array(limitArb, { minLength: 1, maxLength: 3 }).map((shapes) => shapes.map((shape, i) => ({ ...shape, name: `l${i}` }) as Limit));
const startArb = fc.integer({ min: Date.parse('2023-12-30T00:00:00Z'), max: Date.parse('2026-01-01T00:00:00Z') });
const opsArb = fc.array(opArb, { minLength: 1, maxLength: 120, size: 'max' });

describe('quota engine properties', () => {
  it('never admits more than a limit allows, and agrees with the reference, when settles stay within their holds', () => {
    fc.assert(
      fc.property(setArb, opsArb, startArb, (limits, ops, start) => run(limits, ops, start, false)),
      { numRuns: 500 },
    );
  });

  it('exceeds a limit only by the extras of settles above their holds, and agrees with the reference', () => {
    fc.assert(
      fc.property(setArb, opsArb, startArb, (limits, ops, start) => run(limits, ops, start, true)),
      { numRuns: 500 },
    );
  });
});
