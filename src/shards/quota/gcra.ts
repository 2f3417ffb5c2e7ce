/**
 * GCRA, the Generic Cell Rate Algorithm (ITU-T I.371): one number per limit, the
 * theoretical arrival time `tat`. With emission interval T = period/limit and capacity
 * `burst` units, a request of `cost` at `now` conforms when it would not push `tat` more
 * than burst·T past `now`.
 */
import type { RateLimit } from './limits.js';

/** Float slack so that a request that fits exactly is never refused by rounding. */
const EPSILON = 1e-9;

export interface GcraParams {
  interval: number;
  burst: number;
}

export function gcraParams(limit: RateLimit): GcraParams {
  return { interval: limit.period_ms / limit.limit, burst: limit.burst ?? limit.limit };
}

export interface GcraOutcome {
  allowed: boolean;
  tat: number;
  retryAfterMs: number;
  exceedsCapacity: boolean;
}

export function gcraTake(p: GcraParams, tat: number, now: number, cost: number): GcraOutcome {
  const base = tat > now ? tat : now;
  const next = base + cost * p.interval;
  const capacity = p.burst * p.interval;
  if (next - now <= capacity * (1 + EPSILON)) return { allowed: true, tat: next, retryAfterMs: 0, exceedsCapacity: false };
  const exceedsCapacity = cost > p.burst;
  return { allowed: false, tat, retryAfterMs: Math.max(1, Math.ceil(next - capacity - now)), exceedsCapacity };
}

export function gcraRemaining(p: GcraParams, tat: number, now: number): number {
  const backlog = tat > now ? tat - now : 0;
  const free = Math.floor((p.burst * p.interval - backlog) / p.interval + EPSILON);
  return free < 0 ? 0 : free > p.burst ? p.burst : free;
}

/** When the bucket is full again. */
export function gcraResetAt(tat: number, now: number): number {
  return tat > now ? Math.ceil(tat) : now;
}
