/**
 * Quota state to and from a JSON-safe form keyed by limit NAME, not by position, so stored
 * state survives edits of the tier made while the user was away (the same conversions as
 * migrate.ts apply). Reading never throws: a missing or malformed field starts that limit
 * fresh, and hold marks are trusted only for limits whose counters were restored as stored.
 */
import { amountFor } from './charge.js';
import { freshCells, type QuotaState } from './engine.js';
import { gcraCellsAt, gcraTat } from './gcra.js';
import { type Hold, MAX_HOLDS } from './holds.js';
import { type IdempotencyEntry, MAX_IDEMPOTENCY_ENTRIES } from './idempotency.js';
import type { CompiledLimit, LimitSet } from './limitSet.js';
import { carryCells } from './migrate.js';
import { MAX_DURATION_MS } from './validate.js';
import { RING } from './window.js';

type LimitCellsJSON =
  | { kind: 'rate'; tat: number; anchor: number; units: number; limit: number; period_ms: number }
  | { kind: 'window'; window_ms: number; newest: number; slots: number[] }
  | { kind: 'budget'; used: number; period_start: number };

interface HoldJSON {
  id: string;
  cost: number;
  resource: string;
  /** The amounts of other resources held, when there are any. */
  amounts?: Record<string, number>;
  /** What the hold charged each limit, by limit name, where it charged anything; absent in the first stored form. */
  held?: Record<string, number>;
  created_at: number;
  expires_at: number;
  marks: Record<string, number>;
}

export interface QuotaStateJSON {
  v: 1;
  limits: Record<string, LimitCellsJSON>;
  holds?: HoldJSON[];
  idem?: { key: string; fingerprint: string; created_at: number; answer: unknown }[];
}

export function quotaStateToJSON(set: LimitSet, state: QuotaState): QuotaStateJSON {
  const cells = state.cells;
  // fromEntries, not assignment: a limit may be named "__proto__".
  const limits = Object.fromEntries(set.compiled.map((entry) => [entry.limit.name, limitToJSON(entry, cells)]));
  const json: QuotaStateJSON = { v: 1, limits };
  if (state.holds !== null) {
    json.holds = state.holds.map((hold) => {
      const held: HoldJSON = {
        id: hold.id,
        cost: hold.cost,
        resource: hold.resource,
        created_at: hold.createdAt,
        expires_at: hold.expiresAt,
        held: Object.fromEntries(set.compiled.flatMap((entry, i) => ((hold.held[i] ?? 0) > 0 ? [[entry.limit.name, hold.held[i]!]] : []))),
        marks: Object.fromEntries(set.compiled.flatMap((entry, i) => (Number.isNaN(hold.marks[i] ?? NaN) ? [] : [[entry.limit.name, hold.marks[i]!]]))),
      };
      if (hold.amounts !== null) held.amounts = { ...hold.amounts };
      return held;
    });
  }
  if (state.idem !== null)
    json.idem = state.idem.map((entry) => ({ key: entry.key, fingerprint: entry.fingerprint, created_at: entry.createdAt, answer: entry.answer }));
  return json;
}

function limitToJSON({ limit, offset, gcra }: CompiledLimit, cells: readonly number[]): LimitCellsJSON {
  switch (limit.kind) {
    case 'rate': {
      return {
        kind: 'rate',
        tat: gcraTat(gcra!, cells, offset),
        anchor: cells[offset]!,
        units: cells[offset + 1]!,
        limit: limit.limit,
        period_ms: limit.period_ms,
      };
    }
    case 'window':
      return { kind: 'window', window_ms: limit.window_ms, newest: cells[offset]!, slots: cells.slice(offset + 1, offset + 1 + RING) };
    case 'budget':
      return { kind: 'budget', used: cells[offset]!, period_start: cells[offset + 1]! };
  }
}

const isFiniteNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isAmount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 1;
const isDuration = (value: unknown): value is number => isAmount(value) && value <= MAX_DURATION_MS;

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function member(object: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

export function quotaStateFromJSON(set: LimitSet, json: unknown): QuotaState {
  const root = record(json);
  const stored = record(member(root, 'limits'));
  const cells = freshCells(set);
  const marksHold = set.compiled.map((entry) => limitFromJSON(record(member(stored, entry.limit.name)), entry, cells));
  return { cells, holds: holdsFromJSON(set, member(root, 'holds'), marksHold), idem: idemFromJSON(member(root, 'idem')) };
}

/** Restores one limit's cells if `entry` is well formed; returns whether its hold marks can be trusted. */
function limitFromJSON(json: Record<string, unknown>, to: CompiledLimit, cells: number[]): boolean {
  const limit = to.limit;
  if (json.kind !== limit.kind) return false;
  if (limit.kind === 'rate') {
    const { anchor, units, limit: per, period_ms } = json;
    if (isFiniteNumber(anchor) && isAmount(per) && isCount(units) && units < per && isDuration(period_ms)) {
      return carryCells({ name: limit.name, kind: 'rate', limit: per, period_ms }, [anchor, units], 0, to, cells);
    }
    if (!isFiniteNumber(json.tat)) return false;
    [cells[to.offset], cells[to.offset + 1]] = gcraCellsAt(json.tat);
    return true;
  }
  if (limit.kind === 'window') {
    const { newest, slots } = json;
    const windowMs = json.window_ms === undefined ? limit.window_ms : json.window_ms;
    if (!isDuration(windowMs) || !Number.isSafeInteger(newest) || !Array.isArray(slots) || slots.length !== RING || !slots.every(isCount)) return false;
    return carryCells({ ...limit, window_ms: windowMs }, [newest as number, ...(slots as number[])], 0, to, cells);
  }
  if (!isCount(json.used) || !isFiniteNumber(json.period_start)) return false;
  cells[to.offset] = json.used;
  cells[to.offset + 1] = json.period_start;
  return true;
}

function holdsFromJSON(set: LimitSet, json: unknown, marksHold: readonly boolean[]): Hold[] | null {
  if (!Array.isArray(json)) return null;
  const holds: Hold[] = [];
  const ids = new Set<string>();
  for (const raw of json.slice(-MAX_HOLDS)) {
    const hold = record(raw);
    const { id, cost, resource, created_at, expires_at } = hold;
    if (typeof id !== 'string' || ids.has(id) || !isAmount(cost) || typeof resource !== 'string' || !isFiniteNumber(created_at) || !isFiniteNumber(expires_at))
      continue;
    ids.add(id);
    const marks = record(member(hold, 'marks'));
    const amounts = amountsFromJSON(member(hold, 'amounts'), resource);
    const held = member(hold, 'held');
    holds.push({
      id,
      cost,
      resource,
      amounts,
      createdAt: created_at,
      expiresAt: expires_at,
      // The first stored form kept no per-limit amounts: they are what the request charges now.
      held: set.compiled.map((entry) => {
        if (held === undefined) return amountFor(entry.limit, { cost, resource, amounts });
        const amount = member(record(held), entry.limit.name);
        return isAmount(amount) ? amount : 0;
      }),
      marks: set.compiled.map((entry, i) => {
        const mark = member(marks, entry.limit.name);
        return marksHold[i] === true && isFiniteNumber(mark) ? mark : NaN;
      }),
    });
  }
  return holds.length === 0 ? null : holds;
}

/** The held amounts that are whole units of a resource other than the hold's own; null when none are. */
function amountsFromJSON(json: unknown, resource: string): Readonly<Record<string, number>> | null {
  const entries = Object.entries(record(json)).filter(([name, amount]) => name !== resource && isAmount(amount));
  return entries.length === 0 ? null : Object.freeze(Object.fromEntries(entries) as Record<string, number>);
}

function idemFromJSON(json: unknown): IdempotencyEntry[] | null {
  if (!Array.isArray(json)) return null;
  const entries: IdempotencyEntry[] = [];
  for (const raw of json.slice(-MAX_IDEMPOTENCY_ENTRIES)) {
    const entry = record(raw);
    // `createdAt` is how the first stored version spelled it.
    const createdAt = entry.created_at ?? entry.createdAt;
    if (typeof entry.key === 'string' && typeof entry.fingerprint === 'string' && isFiniteNumber(createdAt)) {
      entries.push({ key: entry.key, fingerprint: entry.fingerprint, createdAt, answer: entry.answer });
    }
  }
  return entries.length === 0 ? null : entries;
}
