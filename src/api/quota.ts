/**
 * The quota commands every transport offers: consume, reserve, settle, release and the
 * keyed limiter check. HTTP and NATS differ in how a caller is named and how an answer is
 * written; what a command asks of the owner, and which requests are refused before it is
 * asked, is decided here once.
 */
import {
  type Charge,
  DEFAULT_RESOURCE,
  InvalidRequestError,
  type LimiterRequest,
  type LimitState,
  limitStateView,
  namedTwice,
  newReservationId,
  type QuotaDecision,
  type UserRequest,
} from '../shards/index.js';
import type { Caller, Router } from './router.js';
import type { Body, LimiterBody, LimiterReply } from './schemas.js';

/** How long a reservation holds when the request names no `ttl_ms`. */
const DEFAULT_RESERVATION_TTL_MS = 60_000;

interface ChargeFields {
  cost?: number;
  resource?: string;
  amounts?: Record<string, number>;
}

/** The charge a consume or reservation asks for; a resource named both as `resource` and in `amounts` is refused. */
function chargeOf(body: ChargeFields): Charge & { resource: string } {
  const charge = { cost: body.cost ?? 1, resource: body.resource ?? DEFAULT_RESOURCE, amounts: body.amounts };
  const twice = namedTwice(charge);
  if (twice !== null) throw new InvalidRequestError(twice);
  return charge;
}

export function consumeRequest(caller: Caller, body: ChargeFields, idempotencyKey: string | undefined): UserRequest<'quota.consume'> {
  const args: UserRequest<'quota.consume'>['args'] = chargeOf(body);
  if (idempotencyKey !== undefined) args.idempotencyKey = idempotencyKey;
  return { userId: caller.userId, credential: caller.credential, op: 'quota.consume', args };
}

/** A hold of nothing in particular is more likely a mistake than a hold of 1: it is refused. */
export function reserveRequest(caller: Caller, body: ChargeFields & { ttl_ms?: number }): UserRequest<'quota.reserve'> {
  if (body.cost === undefined && !Object.values(body.amounts ?? {}).some((amount) => amount > 0)) {
    throw new InvalidRequestError('send `cost`, an amount in `amounts`, or both');
  }
  const args = { ...chargeOf(body), id: newReservationId(), ttlMs: body.ttl_ms ?? DEFAULT_RESERVATION_TTL_MS };
  return { userId: caller.userId, credential: caller.credential, op: 'quota.reserve', args };
}

export function settleRequest(caller: Caller, id: string, body: { actual?: number; amounts?: Record<string, number> }): UserRequest<'quota.settle'> {
  const { actual, amounts } = body;
  if (actual === undefined && amounts === undefined) throw new InvalidRequestError('send `actual`, `amounts` or both');
  return { userId: caller.userId, credential: caller.credential, op: 'quota.settle', args: { id, actual, amounts } };
}

export function releaseRequest(caller: Caller, id: string): UserRequest<'quota.release'> {
  return { userId: caller.userId, credential: caller.credential, op: 'quota.release', args: { id } };
}

/** A service's keyed sliding-window check (`POST /v1/limiter/check`, `tally.v1.limiter.check`). */
export async function checkServiceLimiter(router: Router, body: Body<typeof LimiterBody>): Promise<Body<typeof LimiterReply>> {
  const request: LimiterRequest = {
    op: 'check',
    namespace: 'service',
    key: body.key,
    spec: { kind: 'window', limit: body.limit, windowMs: body.window_ms },
    cost: body.cost ?? 1,
  };
  const decision = await router.limiter(request);
  const state = decision.limits[0]!;
  return { allowed: decision.allowed, remaining: state.remaining, reset_at: new Date(state.reset_at).toISOString() };
}

/**
 * The answer to a consume a `fail_open` tier allowed without its owner: no limits are known.
 * HTTP sends it with `Tally-Degraded: 1`; NATS adds `degraded: true`.
 */
export const DEGRADED_ANSWER = Object.freeze({ allowed: true, limits: Object.freeze([]) });

export const limitViews = (limits: readonly LimitState[]) => limits.map(limitStateView);

/**
 * Why a refused decision was refused, for the reply: `exceeds_capacity` when an amount can
 * never fit its limit (no wait helps, so no retry time), otherwise rate-limited with the time
 * after which the same request fits.
 */
export type Refusal = { kind: 'exceeds_capacity'; limit: string | undefined; detail: string } | { kind: 'rate_limited'; retryAfterMs: number };

export function refusalOf(decision: QuotaDecision): Refusal {
  if (decision.exceedsCapacity) {
    const detail = `limit "${decision.denied}" can never admit as much as this request asks of it; nothing was charged`;
    return { kind: 'exceeds_capacity', limit: decision.denied, detail };
  }
  return { kind: 'rate_limited', retryAfterMs: Math.max(0, Math.ceil(decision.retryAfterMs)) };
}
