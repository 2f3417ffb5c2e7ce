/**
 * A compiled, immutable set of limits, shared by every user of a tier: the limits, their
 * precomputed parameters, and where each limit's counters sit in a user's flat `cells`
 * array. A user's own memory is then just that array of numbers.
 */
import { gcraParams, type GcraParams } from './gcra.js';
import type { Limit } from './limits.js';
import { slotWidth, WINDOW_CELLS } from './window.js';

export interface CompiledLimit {
  limit: Limit;
  offset: number;
  /** GCRA parameters (rate limits). */
  gcra: GcraParams | null;
  /** Slot width in ms (window limits). */
  width: number;
}

export interface LimitSet {
  readonly limits: readonly Limit[];
  readonly compiled: readonly CompiledLimit[];
  readonly size: number;
}

/** Budget cells: [used, period start, next period start] (the end is kept so that no Date is built per decision). */
export const BUDGET_CELLS = 3;

export function cellsOf(limit: Limit): number {
  return limit.kind === 'rate' ? 1 : limit.kind === 'window' ? WINDOW_CELLS : BUDGET_CELLS;
}

export function compileLimits(limits: readonly Limit[]): LimitSet {
  let offset = 0;
  const compiled = limits.map((limit) => {
    const entry: CompiledLimit = {
      limit,
      offset,
      gcra: limit.kind === 'rate' ? gcraParams(limit) : null,
      width: limit.kind === 'window' ? slotWidth(limit.window_ms) : 0,
    };
    offset += cellsOf(limit);
    return entry;
  });
  return Object.freeze({ limits: Object.freeze([...limits]), compiled: Object.freeze(compiled), size: offset });
}

/** Limits without a resource apply to every consume; the others only to their resource. */
export function applies(limit: Limit, resource: string): boolean {
  return limit.resource === undefined || limit.resource === resource;
}

const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_DURATION_MS = 31_622_400_000;

const isAmount = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 1;
const isDuration = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_DURATION_MS;

/** A human-readable reason the limits cannot be installed, or null when they can. */
export function validateLimits(limits: readonly Limit[]): string | null {
  const names = new Set<string>();
  for (const limit of limits as readonly (Limit & Record<string, unknown>)[]) {
    if (typeof limit.name !== 'string' || !NAME.test(limit.name)) return 'a limit name is 1 to 64 letters, digits or "_.:-"';
    if (names.has(limit.name)) return `the name "${limit.name}" is used twice`;
    names.add(limit.name);
    if (!isAmount(limit.limit)) return `"${limit.name}": limit must be an integer from 1 to 2^53-1`;
    if (limit.resource !== undefined && (typeof limit.resource !== 'string' || limit.resource.length < 1 || limit.resource.length > 64)) {
      return `"${limit.name}": resource must be 1 to 64 characters`;
    }
    switch (limit.kind) {
      case 'rate':
        if (!isDuration(limit.period_ms)) return `"${limit.name}": period_ms must be an integer from 1 to ${MAX_DURATION_MS}`;
        if (limit.burst !== undefined && !isAmount(limit.burst)) return `"${limit.name}": burst must be an integer from 1 to 2^53-1`;
        break;
      case 'window':
        if (!isDuration(limit.window_ms)) return `"${limit.name}": window_ms must be an integer from 1 to ${MAX_DURATION_MS}`;
        break;
      case 'budget':
        if (limit.period !== 'day' && limit.period !== 'month') return `"${limit.name}": period must be "day" or "month"`;
        break;
      default:
        return `"${String((limit as { name: unknown }).name)}": unknown kind "${String((limit as { kind: unknown }).kind)}"`;
    }
  }
  return null;
}
