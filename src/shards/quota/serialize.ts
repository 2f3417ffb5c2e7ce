/**
 * Moving quota state between limit sets and to and from JSON. Counters are carried by limit
 * NAME (and kind), never by position, so editing a tier keeps every user's usage of the
 * limits that stayed, and starts new limits fresh. Reading JSON never throws: a field that
 * is missing or malformed starts that limit fresh.
 */
import { freshCells, type Hold, type QuotaState } from './engine.js';
import type { IdempotencyEntry } from './idempotency.js';
import { cellsOf, type LimitSet } from './limitSet.js';
import { RING } from './window.js';

export function migrateQuotaState(from: LimitSet, state: QuotaState, to: LimitSet): QuotaState {
  if (from === to) return state;
  const cells = freshCells(to);
  const positions = to.compiled.map((entry) => from.compiled.findIndex((old) => old.limit.name === entry.limit.name && old.limit.kind === entry.limit.kind));
  to.compiled.forEach((entry, i) => {
    const old = from.compiled[positions[i]!];
    if (old === undefined) return;
    for (let c = 0; c < cellsOf(entry.limit); c++) cells[entry.offset + c] = state.cells[old.offset + c]!;
  });
  const holds = state.holds?.map((hold) => ({ ...hold, marks: positions.map((p) => (p < 0 ? NaN : (hold.marks[p] ?? NaN))) })) ?? null;
  return { cells, holds, idem: state.idem };
}

interface StoredHold {
  id: string;
  cost: number;
  resource: string;
  created_at: number;
  expires_at: number;
  marks: Record<string, number>;
}

export function quotaStateToJSON(set: LimitSet, state: QuotaState): unknown {
  const limits: Record<string, unknown> = {};
  for (const { limit, offset } of set.compiled) {
    if (limit.kind === 'rate') limits[limit.name] = { kind: 'rate', tat: state.cells[offset] };
    else if (limit.kind === 'window') limits[limit.name] = { kind: 'window', newest: state.cells[offset], slots: state.cells.slice(offset + 1, offset + 1 + RING) };
    else limits[limit.name] = { kind: 'budget', used: state.cells[offset], period_start: state.cells[offset + 1], period_end: state.cells[offset + 2] };
  }
  const holds: StoredHold[] | undefined = state.holds?.map((hold) => {
    const marks: Record<string, number> = {};
    set.compiled.forEach((entry, i) => {
      const mark = hold.marks[i];
      if (mark !== undefined && !Number.isNaN(mark)) marks[entry.limit.name] = mark;
    });
    return { id: hold.id, cost: hold.cost, resource: hold.resource, created_at: hold.createdAt, expires_at: hold.expiresAt, marks };
  });
  return { v: 1, limits, ...(holds === undefined ? {} : { holds }), ...(state.idem === null ? {} : { idem: state.idem }) };
}

const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);
const record = (value: unknown): Record<string, unknown> => (typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {});

export function quotaStateFromJSON(set: LimitSet, json: unknown): QuotaState {
  const root = record(json);
  const stored = record(root.limits);
  const cells = freshCells(set);
  for (const { limit, offset } of set.compiled) {
    const entry = record(stored[limit.name]);
    if (entry.kind !== limit.kind) continue;
    if (limit.kind === 'rate' && isNumber(entry.tat)) cells[offset] = entry.tat;
    else if (limit.kind === 'window' && isNumber(entry.newest) && Array.isArray(entry.slots) && entry.slots.length === RING && entry.slots.every(isNumber)) {
      cells[offset] = entry.newest;
      for (let i = 0; i < RING; i++) cells[offset + 1 + i] = entry.slots[i] as number;
    } else if (limit.kind === 'budget' && isNumber(entry.used) && isNumber(entry.period_start)) {
      cells[offset] = entry.used;
      cells[offset + 1] = entry.period_start;
      // The end is derived from the start; a missing one is recomputed at the next decision.
      cells[offset + 2] = isNumber(entry.period_end) ? entry.period_end : 0;
    }
  }
  const holds: Hold[] = [];
  if (Array.isArray(root.holds)) {
    for (const raw of root.holds) {
      const hold = record(raw);
      if (typeof hold.id !== 'string' || !isNumber(hold.cost) || typeof hold.resource !== 'string' || !isNumber(hold.created_at) || !isNumber(hold.expires_at)) continue;
      const marks = record(hold.marks);
      holds.push({
        id: hold.id,
        cost: hold.cost,
        resource: hold.resource,
        createdAt: hold.created_at,
        expiresAt: hold.expires_at,
        marks: set.compiled.map((entry) => (isNumber(marks[entry.limit.name]) ? (marks[entry.limit.name] as number) : NaN)),
      });
    }
  }
  const idem: IdempotencyEntry[] = [];
  if (Array.isArray(root.idem)) {
    for (const raw of root.idem) {
      const entry = record(raw);
      if (typeof entry.key === 'string' && typeof entry.fingerprint === 'string' && isNumber(entry.createdAt)) {
        idem.push({ key: entry.key, fingerprint: entry.fingerprint, createdAt: entry.createdAt, answer: entry.answer });
      }
    }
  }
  return { cells, holds: holds.length === 0 ? null : holds, idem: idem.length === 0 ? null : idem };
}
