import {
  checkServiceLimiter,
  consumeRequest,
  DEGRADED_ANSWER,
  limitViews,
  problem,
  refusalOf,
  releaseRequest,
  reserveRequest,
  schemas as S,
  settleRequest,
} from '../../api/index.js';
import { type LimitState, limitsJson, type QuotaDecision } from '../../shards/index.js';
import { rateLimitHeaders, retryAfterSeconds } from '../rateLimitHeaders.js';
import { RATE_LIMIT_HEADERS, type Reply, type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

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
        const decision = router.tryUser(consumeRequest(caller, body, idempotencyKey ?? undefined));
        return decision === undefined ? undefined : consumeReply(decision, clock());
      },
      async handle({ caller, body, idempotencyKey }) {
        const decision = await router.user(consumeRequest(caller, body, idempotencyKey ?? undefined));
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
        const request = reserveRequest(caller, body);
        const decision = await router.user(request);
        return decide(decision, clock(), { id: request.args.id, expires_at: new Date(decision.expiresAt).toISOString() }, 201);
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
        const settled = await router.user(settleRequest(caller, params.id!, body));
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
        await router.user(releaseRequest(caller, params.id!));
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
  text: JSON.stringify(DEGRADED_ANSWER),
  contentType: 'application/json',
  headers: Object.freeze({ 'tally-degraded': '1' }),
});

/**
 * 2xx with `fields` and the limits when allowed; 422 when an amount can never fit its limit
 * (no wait helps, so no Retry-After); otherwise 429 with the same limits.
 */
function decide(decision: QuotaDecision, now: number, fields: Record<string, unknown>, status: number): Reply {
  if (decision.allowed) return limitsReply(status, { ...fields, limits: decision.limits }, now);
  const limits = limitViews(decision.limits);
  const refusal = refusalOf(decision);
  if (refusal.kind === 'exceeds_capacity') {
    return { status: 422, body: problem('exceeds_limit', refusal.detail, { limit: refusal.limit, limits }), contentType: 'application/problem+json' };
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
  return { status, body: { ...body, limits: limitViews(body.limits) }, headers: rateLimitHeaders(body.limits, now) };
}
