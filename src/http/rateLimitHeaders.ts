/**
 * Rate-limit headers for the tightest of the limits that applied: the IETF structured fields
 * (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: "name";q=…;w=…` and
 * `RateLimit: "name";r=…;t=…`) and the legacy `X-RateLimit-*` trio that older clients read
 * (`X-RateLimit-Reset` in epoch seconds, as GitHub sends it).
 */
import { type LimitState, LimitTexts } from '../shards/index.js';

/** The limit closest to refusing: the smallest share remaining, then the earliest reset. */
export function tightest(limits: readonly LimitState[]): LimitState | undefined {
  let best: LimitState | undefined;
  let bestShare = Infinity;
  for (const state of limits) {
    const share = state.remaining / state.limit;
    if (share < bestShare || (share === bestShare && best !== undefined && state.reset_at < best.reset_at)) {
      best = state;
      bestShare = share;
    }
  }
  return best;
}

export function rateLimitHeaders(limits: readonly LimitState[], now: number): Record<string, string> {
  const state = tightest(limits);
  if (state === undefined) return {};
  const policy = policies.for(state);
  const resetSeconds = Math.max(0, Math.ceil((state.reset_at - now) / 1000));
  return {
    'RateLimit-Policy': policy.header,
    RateLimit: `${policy.quotedName};r=${state.remaining};t=${resetSeconds}`,
    'X-RateLimit-Limit': policy.limitText,
    'X-RateLimit-Remaining': String(state.remaining),
    'X-RateLimit-Reset': String(Math.ceil(state.reset_at / 1000)),
  };
}

interface Policy {
  /** What the texts were built from. */
  limit: number;
  windowMs: number;
  quotedName: string;
  header: string;
  limitText: string;
}

/** The parts of the headers that stay the same while a limit does. */
const policies = new LimitTexts<Policy>(
  (policy, state) => policy.limit === state.limit && policy.windowMs === state.window_ms,
  (state) => {
    const quotedName = `"${state.name}"`;
    const windowSeconds = Math.max(1, Math.ceil(state.window_ms / 1000));
    return {
      limit: state.limit,
      windowMs: state.window_ms,
      quotedName,
      header: `${quotedName};q=${state.limit};w=${windowSeconds}`,
      limitText: String(state.limit),
    };
  },
);

export function retryAfterSeconds(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}
