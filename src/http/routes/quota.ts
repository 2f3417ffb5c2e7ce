import {
  type Charge,
  DEFAULT_RESOURCE,
  InvalidRequestError,
  type LimitState,
  limitStateView,
  limitsJson,
  namedTwice,
  newReservationId,
  type QuotaDecision,
  type UserRequest,
} from '../../shards/index.js';
import { problem } from '../problem.js';
import { rateLimitHeaders, retryAfterSeconds } from '../rateLimitHeaders.js';
import { type Caller, RATE_LIMIT_HEADERS, type Reply, type RouteDefinition, route } from '../route.js';
import type { Body } from '../schemas.js';
import * as S from '../schemas.js';
import type { RouteDeps } from './deps.js';

const DEFAULT_RESERVATION_TTL_MS = 60_000;

export function quotaRoutes(deps: RouteDeps): RouteDefinition[] {
  const { router, clock } = deps;
  return [
    route({
      method: 'post',
      path: '/v1/quota/consume',
      summary: 'Spend `cost`, and `amounts` of named resources, against every limit that applies, all or nothing',
      tag: 'quota',
      auth: 'user',
      apiKeys: true,
      idempotencyKey: true,
      abandonIfClientGone: true,
      body: S.ConsumeBody,
      bodyOptional: true,
      responses: {
        200: {
          description: 'allowed; with `Tally-Degraded: 1` and no limits when a `fail_open` tier allowed it without its owner',
          schema: S.ConsumeReply,
          headers: [...RATE_LIMIT_HEADERS, 'Tally-Degraded'],
        },
        400: { description: 'the body does not match the schema, or names a resource both as `resource` and in `amounts`' },
        422: {
          description:
            'an amount is larger than its limit can ever admit (the problem names it in `limit`): nothing was charged; or the Idempotency-Key was used for another charge',
          schema: S.LimitProblem,
          mediaType: 'application/problem+json',
        },
        429: {
          description: 'refused: nothing was charged; the problem lists the limits',
          schema: S.RefusedProblem,
          mediaType: 'application/problem+json',
          headers: [...RATE_LIMIT_HEADERS, 'Retry-After'],
        },
      },
      fast({ caller, body, idempotencyKey }) {
        const decision = router.tryUser(consumeRequest(caller, body, idempotencyKey));
        return decision === undefined ? undefined : consumeReply(decision, clock());
      },
      async handle({ caller, body, idempotencyKey }) {
        const decision = await router.user(consumeRequest(caller, body, idempotencyKey));
        // Only the router's asynchronous path can degrade (the owner was not reached).
        return decision.degraded === true ? DEGRADED_REPLY : consumeReply(decision, clock());
      },
    }),
    route({
      method: 'post',
      path: '/v1/quota/reservations',
      summary: 'Hold `cost` and `amounts` for a call whose real cost is known only afterwards',
      tag: 'quota',
      auth: 'user',
      apiKeys: true,
      abandonIfClientGone: true,
      body: S.ReserveBody,
      responses: {
        201: { description: 'held', schema: S.Reservation, headers: RATE_LIMIT_HEADERS },
        400: { description: 'the body does not match the schema, holds nothing, or names a resource twice' },
        422: {
          description: 'an amount is larger than its limit can ever admit (named in `limit`): nothing was held',
          schema: S.LimitProblem,
          mediaType: 'application/problem+json',
        },
        429: {
          description: 'does not fit now, or the user holds too many reservations: nothing was held',
          schema: S.RefusedProblem,
          mediaType: 'application/problem+json',
          headers: [...RATE_LIMIT_HEADERS, 'Retry-After'],
        },
      },
      async handle({ caller, body }) {
        // A hold of nothing in particular is more likely a mistake than a hold of 1.
        if (body.cost === undefined && !Object.values(body.amounts ?? {}).some((amount) => amount > 0)) {
          throw new InvalidRequestError('send `cost`, an amount in `amounts`, or both');
        }
        const id = newReservationId();
        const decision = await router.user({
          ...caller,
          op: 'quota.reserve',
          args: { ...chargeOf(body), id, ttlMs: body.ttl_ms ?? DEFAULT_RESERVATION_TTL_MS },
        });
        return decide(decision, clock(), { id, expires_at: new Date(decision.expiresAt).toISOString() }, 201);
      },
    }),
    route({
      method: 'post',
      path: '/v1/quota/reservations/{id}/settle',
      summary: 'Settle a hold at what it actually took: the differences are refunded or charged per limit',
      tag: 'quota',
      auth: 'user',
      apiKeys: true,
      body: S.SettleBody,
      responses: {
        200: { description: 'settled', schema: S.LimitsReply, headers: RATE_LIMIT_HEADERS },
        404: { description: 'no such hold (settled, released or expired)' },
        422: {
          description:
            'the settlement does not say what it settles (`actual` alone for a hold of several resources), or contradicts itself; the hold stays open',
        },
      },
      async handle({ caller, params, body }) {
        const { actual, amounts } = body;
        if (actual === undefined && amounts === undefined) throw new InvalidRequestError('send `actual`, `amounts` or both');
        const settled = await router.user({ ...caller, op: 'quota.settle', args: { id: params.id!, actual, amounts } });
        return limitsReply(200, { limits: settled.limits }, clock());
      },
    }),
    route({
      method: 'delete',
      path: '/v1/quota/reservations/{id}',
      summary: 'Release a hold',
      tag: 'quota',
      auth: 'user',
      apiKeys: true,
      responses: { 204: { description: 'released' }, 404: { description: 'no such hold' } },
      async handle({ caller, params }) {
        await router.user({ ...caller, op: 'quota.release', args: { id: params.id! } });
        return { status: 204 };
      },
    }),
    route({
      method: 'get',
      path: '/v1/quota',
      summary: 'The caller’s limits, without spending',
      tag: 'quota',
      auth: 'user',
      apiKeys: true,
      responses: { 200: { description: 'limits', schema: S.QuotaReply, headers: RATE_LIMIT_HEADERS } },
      async handle({ caller }) {
        const quota = await router.user({ ...caller, op: 'quota.get', args: {} });
        return limitsReply(200, { tier: quota.tier, limits: quota.limits }, clock());
      },
    }),
    route({
      method: 'post',
      path: '/v1/limiter/check',
      summary: 'Generic keyed limiter: at most `limit` per `window_ms` for `key`',
      tag: 'quota',
      auth: 'service',
      body: S.LimiterBody,
      responses: { 200: { description: 'the decision, allowed or not', schema: S.LimiterReply } },
      async handle({ body }) {
        return { status: 200, body: await checkServiceLimiter(router, body) };
      },
    }),
  ];
}

function consumeRequest(caller: Caller, body: Body<typeof S.ConsumeBody>, idempotencyKey: string | null): UserRequest<'quota.consume'> {
  const args: UserRequest<'quota.consume'>['args'] = chargeOf(body);
  if (idempotencyKey !== null) args.idempotencyKey = idempotencyKey;
  return { userId: caller.userId, credential: caller.credential, op: 'quota.consume', args };
}

/** The charge a consume or reservation asks for; a resource named both as `resource` and in `amounts` is refused. */
export function chargeOf(body: { cost?: number; resource?: string; amounts?: Record<string, number> }): Charge & { resource: string } {
  const charge = { cost: body.cost ?? 1, resource: body.resource ?? DEFAULT_RESOURCE, amounts: body.amounts };
  const twice = namedTwice(charge);
  if (twice !== null) throw new InvalidRequestError(twice);
  return charge;
}

/** A service's keyed sliding-window check (`POST /v1/limiter/check`, `tally.v1.limiter.check`). */
export async function checkServiceLimiter(router: RouteDeps['router'], body: Body<typeof S.LimiterBody>): Promise<Body<typeof S.LimiterReply>> {
  const decision = await router.limiter({
    op: 'check',
    namespace: 'service',
    key: body.key,
    spec: { kind: 'window', limit: body.limit, windowMs: body.window_ms },
    cost: body.cost ?? 1,
  });
  const state = decision.limits[0]!;
  return { allowed: decision.allowed, remaining: state.remaining, reset_at: new Date(state.reset_at).toISOString() };
}

/** The hottest answer of all, so its JSON is written directly (same text as `JSON.stringify`). */
function consumeReply(decision: QuotaDecision, now: number): Reply {
  if (!decision.allowed) return decide(decision, now, {}, 200);
  return {
    status: 200,
    text: `{"allowed":true,"limits":${limitsJson(decision.limits)}}`,
    contentType: 'application/json',
    headers: rateLimitHeaders(decision.limits, now),
  };
}

/** Allowed by a `fail_open` tier without its owner: no limits are known, so no rate-limit headers. */
const DEGRADED_REPLY: Reply = Object.freeze({
  status: 200,
  text: '{"allowed":true,"limits":[]}',
  contentType: 'application/json',
  headers: Object.freeze({ 'tally-degraded': '1' }),
});

/**
 * 2xx with `fields` and the limits when allowed; 422 when an amount can never fit its limit
 * (no wait helps, so no Retry-After); otherwise 429 with the same limits.
 */
function decide(decision: QuotaDecision, now: number, fields: Record<string, unknown>, status: number): Reply {
  if (decision.allowed) return limitsReply(status, { ...fields, limits: decision.limits }, now);
  const limits = decision.limits.map(limitStateView);
  if (decision.exceedsCapacity) {
    const detail = `limit "${decision.denied}" can never admit as much as this request asks of it; nothing was charged`;
    return { status: 422, body: problem('exceeds_limit', detail, { limit: decision.denied, limits }), contentType: 'application/problem+json' };
  }
  const body = problem('rate_limited', 'a limit is exhausted; nothing was charged', { limits });
  return {
    status: 429,
    body,
    headers: { ...rateLimitHeaders(decision.limits, now), 'Retry-After': retryAfterSeconds(decision.retryAfterMs) },
    contentType: 'application/problem+json',
  };
}

function limitsReply(status: number, body: { limits: LimitState[] } & Record<string, unknown>, now: number): Reply {
  return { status, body: { ...body, limits: body.limits.map(limitStateView) }, headers: rateLimitHeaders(body.limits, now) };
}
