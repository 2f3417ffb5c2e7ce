/** Checks limits as an admin or an override declares them, before they are compiled. */
import type { Limit } from './limits.js';

const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
/** 366 days: a window or period longer than a leap year is a mistake, not a policy. */
export const MAX_DURATION_MS = 31_622_400_000;

const isAmount = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 1;
const isDuration = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= MAX_DURATION_MS;

/** A human-readable reason the limits cannot be installed, or null when they can. */
export function validateLimits(limits: readonly Limit[]): string | null {
  if (!Array.isArray(limits)) return 'limits must be a list';
  const names = new Set<string>();
  for (const raw of limits as readonly unknown[]) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'each limit must be an object';
    const problem = validateLimit(raw as Record<string, unknown>);
    if (problem !== null) return problem;
    const name = (raw as Limit).name;
    if (names.has(name)) return `the name "${name}" is used twice`;
    names.add(name);
  }
  return null;
}

function validateLimit(limit: Record<string, unknown>): string | null {
  const { name } = limit;
  if (typeof name !== 'string' || !NAME.test(name)) return 'a limit name is 1 to 64 letters, digits or "_.:-"';
  if (!isAmount(limit.limit)) return `"${name}": limit must be an integer from 1 to 2^53-1`;
  const { resource } = limit;
  if (resource !== undefined && (typeof resource !== 'string' || resource.length < 1 || resource.length > 64)) {
    return `"${name}": resource must be 1 to 64 characters`;
  }
  switch (limit.kind) {
    case 'rate':
      if (!isDuration(limit.period_ms)) return `"${name}": period_ms must be an integer from 1 to ${MAX_DURATION_MS}`;
      if (limit.burst !== undefined && !isAmount(limit.burst)) return `"${name}": burst must be an integer from 1 to 2^53-1`;
      return null;
    case 'window':
      if (!isDuration(limit.window_ms)) return `"${name}": window_ms must be an integer from 1 to ${MAX_DURATION_MS}`;
      return null;
    case 'budget':
      if (limit.period !== 'day' && limit.period !== 'month') return `"${name}": period must be "day" or "month"`;
      return null;
    default:
      return `"${name}": unknown kind ${JSON.stringify(limit.kind) ?? 'undefined'}`;
  }
}
