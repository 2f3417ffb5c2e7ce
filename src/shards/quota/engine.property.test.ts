/**
 * Properties of the engine under random sequences of consumes, reserves, settles, releases
 * and clock steps (small, large, and onto UTC day and month boundaries). Requests charge a
 * cost and amounts of named resources, against limits with and without a resource:
 *
 * 1. Safety: no limit admits more than it allows. A log keeps what each limit admitted and
 *    when: a settled hold counts as its actual amounts at the time it was taken, a released
 *    or expired hold as nothing. When settles may exceed their holds, the excess over any
 *    limit must come only from those extras (charged past the limit on purpose).
 * 2. Agreement with a reference model that keeps every charge as a (time, amount) record
 *    per limit and recomputes each decision from the records: the engine's ring, period
 *    and two-cell GCRA must decide, count and time resets exactly as it does.
 * 3. A refusal charges nothing, and its retryAfterMs is exact to the ms. A settlement that
 *    cannot apply (`actual` alone for a hold of several resources) changes nothing either.
 * 4. Every LimitState has 0 ≤ remaining ≤ limit; state survives JSON.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Charge,
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
  type Settlement,
  settle,
  snapshot,
} from './index.js';

// ---- the reference model ---------------------------------------------------------------

interface Entry {
  t: number;
  amount: number;
}

interface RefHold {
  /** Per limit, the amount held. */
  held: number[];
  expiresAt: number;
  /** Per limit, the index of its record in that limit's list, or -1. */
  records: number[];
}

const slot = (t: number, windowMs: number) => Math.floor((t * 10) / windowMs);

/** The rule, restated: cost for limits without a resource or naming the request's; else the request's amount of the limit's resource. */
function amountsOf(limits: readonly Limit[], charge: Charge): number[] {
  return limits.map((limit) => {
    if (limit.resource === undefined || limit.resource === (charge.resource ?? 'default')) return charge.cost;
    return charge.amounts?.[limit.resource] ?? 0;
  });
}

const capacity = (limit: Limit) => (limit.kind === 'rate' ? (limit.burst ?? limit.limit) : limit.limit);

class Reference {
  constructor(
    readonly limits: readonly Limit[],
    readonly records: Entry[][] = limits.map(() => []),
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
    for (const [id, hold] of this.holds)
      if (hold.expiresAt <= now)
        this.settle(
          id,
          this.limits.map(() => 0),
          now,
        );
  }

  /** Admits and charges `amounts` (per limit), or returns null; records the charges' indices for a hold. */
  take(now: number, amounts: readonly number[]): number[] | null {
    if (amounts.some((amount, i) => amount > 0 && !this.fits(i, now, amount))) return null;
    return amounts.map((amount, i) => (amount > 0 ? this.records[i]!.push({ t: now, amount }) - 1 : -1));
  }

  settle(id: string, actuals: readonly number[], now: number): void {
    const hold = this.holds.get(id)!;
    this.holds.delete(id);
    this.limits.forEach((limit, i) => {
      const held = hold.held[i]!;
      const actual = actuals[i]!;
      if (actual > held) this.records[i]!.push({ t: now, amount: actual - held });
      if (actual >= held) return;
      const record = this.records[i]![hold.records[i]!]!;
      const stillCounted =
        (limit.kind === 'window' && slot(record.t, limit.window_ms) >= slot(now, limit.window_ms) - 10) ||
        (limit.kind === 'budget' && periodStart(record.t, limit.period) === periodStart(now, limit.period));
      if (stillCounted) record.amount -= held - actual;
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

const RESOURCES = ['default', 'a', 'b'] as const;
const resourceArb = fc.constantFrom<string | undefined>(undefined, 'default', 'a');
/** A cost, maybe a resource, maybe amounts of other resources (zeros included: they charge nothing). */
const chargeArb: fc.Arbitrary<Charge> = fc
  .record({
    cost: fc.integer({ min: 1, max: 12 }),
    resource: resourceArb,
    amounts: fc.option(fc.dictionary(fc.constantFrom(...RESOURCES), fc.integer({ min: 0, max: 12 }), { maxKeys: 3 }), { nil: undefined }),
  })
  .map(({ cost, resource, amounts }) => {
    const charge: { cost: number; resource?: string; amounts?: Record<string, number> } = { cost };
    if (resource !== undefined) charge.resource = resource;
    // A resource is named once: amounts never name the one cost is charged to.
    if (amounts !== undefined) charge.amounts = Object.fromEntries(Object.entries(amounts).filter(([name]) => name !== (resource ?? 'default')));
    return charge;
  });
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
  .chain((limit) =>
    fc.option(fc.constantFrom(...RESOURCES), { nil: undefined, freq: 2 }).map((resource) => (resource === undefined ? limit : { ...limit, resource })),
  );

type Op =
  | { op: 'consume'; charge: Charge }
  | { op: 'reserve'; charge: Charge; ttl: number }
  /** `form`: which of actual and amounts the settlement gives; `fresh`: a resource the hold did not hold, charged `extra` of it (extras only). */
  | { op: 'settle'; pick: number; fraction: number; extra: number; form: 'actual' | 'amounts' | 'both'; fresh: string; drop: number; disagree: boolean }
  | { op: 'release'; pick: number }
  | { op: 'step'; ms: number }
  | { op: 'boundary'; period: 'day' | 'month'; offset: number }
  | { op: 'expiry'; pick: number; offset: number }
  | { op: 'scaled'; pick: number; factor: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('consume' as const), charge: chargeArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('reserve' as const),
      charge: chargeArb,
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
      form: fc.constantFrom('actual' as const, 'amounts' as const, 'both' as const),
      fresh: fc.constantFrom(...RESOURCES),
      drop: fc.integer({ min: 0, max: 15 }),
      disagree: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
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

/** What the safety log keeps, per limit: a settled hold counts as its actual amounts at the hold's time. */
interface Admitted {
  t: number;
  amounts: number[];
  /** The part of each amount that a settle charged above its hold. */
  extras: number[];
  hold?: { id: string; charge: Charge; expiresAt: number; open: boolean };
}

/**
 * A settlement of the hold made by `charge`: what it names is scaled (or given an extra),
 * what it leaves out stays as held. `settledAt` is the charge it settles at, or null when
 * the engine must refuse it (`actual` alone for a hold of several resources, or `actual`
 * and `amounts` disagreeing).
 */
function settlementFor(op: Extract<Op, { op: 'settle' }>, charge: Charge, extras: boolean): { settlement: Settlement; settledAt: Charge | null } {
  const scale = (amount: number) => (extras ? amount + op.extra : Math.floor(amount * op.fraction));
  const resource = charge.resource ?? 'default';
  const held = Object.entries(charge.amounts ?? {}).filter(([, amount]) => amount > 0);
  // Bit k of `drop` leaves the k-th held resource out; bit 3, the hold's own resource.
  const named = Object.fromEntries(held.filter((_, k) => ((op.drop >> k) & 1) === 0).map(([name, amount]) => [name, scale(amount)]));
  const fresh = extras && op.fresh !== resource && !held.some(([name]) => name === op.fresh) ? { [op.fresh]: op.extra } : {};
  const settledAmounts = { ...Object.fromEntries(held), ...named, ...fresh };
  const cost = scale(charge.cost);
  if (op.form === 'actual') return { settlement: { actual: cost }, settledAt: held.length > 0 ? null : { cost, resource } };
  if (op.form === 'both') {
    // Naming the hold's own resource too, with another amount than `actual`, contradicts it.
    const own = op.disagree ? { [resource]: cost + 1 } : {};
    return {
      settlement: { actual: cost, amounts: { ...named, ...fresh, ...own } },
      settledAt: op.disagree ? null : { cost, resource, amounts: settledAmounts },
    };
  }
  // The hold's own resource named in amounts is its actual cost; left out, the cost stays as held.
  const nameOwn = ((op.drop >> 3) & 1) === 0;
  const settlement = { amounts: { ...named, ...fresh, ...(nameOwn ? { [resource]: cost } : {}) } };
  return { settlement, settledAt: { cost: nameOwn ? cost : charge.cost, resource, amounts: settledAmounts } };
}

function run(limits: Limit[], ops: Op[], start: number, extras: boolean): void {
  const set = compileLimits(limits);
  const reference = new Reference(limits);
  const zeros = limits.map(() => 0);
  let state: QuotaState = newQuotaState(set);
  let now = start;
  let holds = 0;
  const log: Admitted[] = [];
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
      for (const entry of log) if (entry.hold?.open === true && entry.hold.expiresAt <= now) [entry.amounts, entry.hold.open] = [zeros, false];
      reference.expire(now);
      if (op.op === 'consume') {
        const amounts = amountsOf(limits, op.charge);
        const decision = consume(set, state, now, op.charge);
        expectSameDecision(decision, reference, now, amounts);
        if (decision.allowed) log.push({ t: now, amounts, extras: zeros });
        else checkRefusal(set, state, decision, now, op.charge);
        state = decision.state;
      } else if (op.op === 'reserve') {
        const id = `h${holds++}`;
        const amounts = amountsOf(limits, op.charge);
        const decision = reserve(set, state, now, { ...op.charge, id, ttlMs: op.ttl });
        const records = expectSameDecision(decision, reference, now, amounts);
        if (records !== null) reference.holds.set(id, { held: amounts, expiresAt: now + op.ttl, records });
        if (decision.allowed) log.push({ t: now, amounts, extras: zeros, hold: { id, charge: op.charge, expiresAt: now + op.ttl, open: true } });
        else checkRefusal(set, state, decision, now, op.charge);
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
          const { settlement, settledAt } = op.op === 'release' ? { settlement: null, settledAt: { cost: 0 } } : settlementFor(op, entry.hold!.charge, extras);
          const result = settlement === null ? release(set, state, now, id) : settle(set, state, now, { ...settlement, id });
          expect(result.found).toBe(true);
          if (settledAt === null) {
            // Refused, and nothing changed: the very same state, unless expired holds were released.
            expect((result as ReturnType<typeof settle>).refused).toMatch(/settle it with amounts|disagree/);
            if (state.holds!.every((hold) => hold.expiresAt > now)) expect(result.state).toBe(state);
            expect(snapshot(set, result.state, now)).toEqual(snapshot(set, state, now));
          } else {
            const actuals = amountsOf(limits, settledAt);
            reference.settle(id, actuals, now);
            entry.hold!.open = false;
            entry.extras = actuals.map((actual, i) => Math.max(0, actual - entry.amounts[i]!));
            entry.amounts = actuals;
          }
          state = result.state;
        }
      }
    }
    checkStates(set, state, now, reference);
  }
  expect(quotaStateFromJSON(set, JSON.parse(JSON.stringify(quotaStateToJSON(set, state))))).toEqual(state);
  limits.forEach((limit, i) => {
    const charged = log.flatMap((entry) => (entry.amounts[i]! > 0 ? [{ t: entry.t, amount: entry.amounts[i]!, extra: entry.extras[i]! }] : []));
    checkSafety(limit, charged);
  });
}

/**
 * The engine admits exactly when the reference does; a refusal names the first limit an
 * amount can never fit, else the first that does not fit now; the answer lists the limits charged.
 */
function expectSameDecision(decision: Decision, reference: Reference, now: number, amounts: readonly number[]): number[] | null {
  const limits = reference.limits;
  const refusing = amounts.findIndex((amount, i) => amount > 0 && !reference.fits(i, now, amount));
  const exceeding = amounts.findIndex((amount, i) => amount > capacity(limits[i]!));
  expect(decision.allowed).toBe(refusing < 0);
  expect(decision.limits.map((limit) => limit.name)).toEqual(limits.filter((_, i) => amounts[i]! > 0).map((limit) => limit.name));
  if (refusing >= 0) {
    expect(decision.exceedsCapacity).toBe(exceeding >= 0);
    expect(decision.denied).toBe(limits[exceeding >= 0 ? exceeding : refusing]!.name);
  }
  return decision.allowed ? reference.take(now, amounts) : null;
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
function checkRefusal(set: LimitSet, before: QuotaState, decision: Decision, now: number, charge: Charge): void {
  expect(snapshot(set, decision.state, now)).toEqual(snapshot(set, before, now));
  expect(decision.retryAfterMs).toBeGreaterThanOrEqual(1);
  if (decision.exceedsCapacity) return;
  expect(consume(set, decision.state, now + decision.retryAfterMs, charge).allowed).toBe(true);
  // Without holds that might expire meanwhile, a ms earlier is still too early.
  if (decision.state.holds === null && decision.retryAfterMs > 1) {
    expect(consume(set, decision.state, now + decision.retryAfterMs - 1, charge).allowed).toBe(false);
  }
}

/** The admitted total beyond the allowance in a span may only be made of extras from that span. */
interface Charged {
  t: number;
  amount: number;
  /** The part of `amount` a settle charged above its hold. */
  extra: number;
}

function checkSafety(limit: Limit, charged: Charged[]): void {
  const sum = (entries: Charged[]) => entries.reduce<[number, number]>(([total, extra], e) => [total + e.amount, extra + e.extra], [0, 0]);
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
    const periods = new Map<number, Charged[]>();
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
