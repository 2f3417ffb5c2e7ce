/**
 * The service API: what a platform service asks of Tally for a user it names — consume, get,
 * reserve, settle and release quota, check a session token, the keyed limiter, the usage
 * query. NATS serves it on `tally.v1.<name>`, HTTP on `/v1/service/…` (with the service
 * token); both hand the parsed body to the operation here and send back what it answers, so
 * the two cannot differ in what they accept, decide or reply.
 *
 * - A body is read as HTTP reads any body: every string well-formed, then the schema.
 * - A decision is a normal reply, allowed or not. Anything else is thrown, and the transport
 *   answers it as the problem `serviceProblem` makes of it.
 * - `quota.consume` and `quota.get` also take `{items: […]}` (batch.ts).
 * - A platform service acts for the user it names: no session or key is checked, but a
 *   blocked user is refused. A consume may name its caller by API key instead (`api_key`),
 *   checked as HTTP checks a bearer key.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { type Credential, InvalidRequestError, type QuotaDecision } from '../shards/index.js';
import { batchable, itemError } from './batch.js';
import { checkServiceLimiter, consumeRequest, DEGRADED_ANSWER, limitViews, refusalOf, releaseRequest, reserveRequest, settleRequest } from './quota.js';
import type { Caller, Router } from './router.js';
import * as S from './schemas.js';
import { checkJsonText } from './text.js';
import { type UsageReader, usagePage, usageQuery } from './usage.js';
import { compile } from './validate.js';

/** Checks a session token's signature and expiry (src/credentials' SessionTokens); throws the 401. */
export interface SessionTokenVerifier {
  verify(token: string): Promise<{ userId: string; sessionId: string; expiresAt: number }>;
}

/** A presented API key (src/credentials' ApiKeys): the caller it names, its MAC perhaps not yet checked. */
export interface PresentedApiKey {
  readonly caller: Caller;
}

/**
 * The callers presented API keys name (src/credentials' ApiKeys); each method throws the one
 * 401 of every bad key. An actor active here checks a key's hash itself, so its MAC is
 * checked (`verified`) only for a request that goes on to a load or a forward.
 */
export interface ApiKeyCallers {
  presented(apiKey: string): PresentedApiKey;
  verified(key: PresentedApiKey): Caller;
  /** An actor here accepted the key: it may be remembered. */
  accepted(key: PresentedApiKey): void;
}

export interface ServiceOperationDeps {
  router: Router;
  tokens: SessionTokenVerifier;
  keys: ApiKeyCallers;
  /** The usage history (the node's store), for `usage.get`. */
  usage: UsageReader;
  clock: () => number;
  /** How a batch answers an item that failed; by default `{error: problem}`. */
  failedItem?(error: unknown): unknown;
}

export type ServiceOperationName =
  | 'quota.consume'
  | 'quota.get'
  | 'quota.reserve'
  | 'quota.settle'
  | 'quota.release'
  | 'sessions.verify'
  | 'limiter.check'
  | 'usage.get';

export interface ServiceOperation {
  /** The last part of its NATS subject. */
  name: ServiceOperationName;
  /** The body it takes and the reply it gives, for the documents: `handle` checks the body itself. */
  request: TSchema;
  reply: TSchema;
  /** The reply, or a promise of it; throws (or rejects) with what went wrong. */
  handle(body: unknown): unknown;
}

const SERVICE: Credential = Object.freeze({ kind: 'service' as const });

/** A platform service acts for the user it names: no session or key is checked, a blocked user is refused. */
const serviceCaller = (userId: string): Caller => ({ userId, credential: SERVICE });

export function serviceOperations(deps: ServiceOperationDeps): ServiceOperation[] {
  const { router, tokens, keys, usage, clock } = deps;
  const batch = (one: (item: unknown) => unknown) => batchable(one, deps.failedItem ?? itemError);
  const byUser = reader(S.NatsConsume);
  const byKey = reader(S.NatsKeyConsume);
  const consume = (raw: unknown) => {
    // A gateway may name the caller by the API key it presented: checked as HTTP checks it.
    const keyed = typeof raw === 'object' && raw !== null && 'api_key' in raw;
    const item = keyed ? byKey(raw) : byUser(raw);
    let presented: PresentedApiKey | null = null;
    let caller: Caller;
    if ('api_key' in item) {
      presented = keys.presented(item.api_key);
      caller = presented.caller;
    } else {
      caller = serviceCaller(item.user_id);
    }
    const request = consumeRequest(caller, item, item.idempotency_key);
    const decided = router.tryUser(request);
    if (decided !== undefined) {
      if (presented !== null) keys.accepted(presented);
      return consumeView(decided);
    }
    // Before a load or a forward, the key's MAC: no actor here has checked its hash.
    if (presented !== null) keys.verified(presented);
    return router.user(request).then(consumeView);
  };
  const get = reader(S.NatsGet);
  const reserve = reader(S.NatsReserve);
  const settle = reader(S.NatsSettle);
  const release = reader(S.NatsRelease);
  const verify = reader(S.NatsVerify);
  const limiter = reader(S.LimiterBody);
  return [
    { name: 'quota.consume', request: S.ServiceConsumeBody, reply: S.ServiceConsumeReply, handle: batch(consume) },
    {
      name: 'quota.get',
      request: S.ServiceGetBody,
      reply: S.ServiceGetReply,
      handle: batch((body) =>
        router
          .user({ userId: get(body).user_id, credential: SERVICE, op: 'quota.get', args: {} })
          .then((quota) => ({ tier: quota.tier, limits: limitViews(quota.limits) })),
      ),
    },
    {
      name: 'quota.reserve',
      request: S.NatsReserve,
      reply: S.ServiceReservation,
      async handle(body) {
        const item = reserve(body);
        const request = reserveRequest(serviceCaller(item.user_id), item);
        const decision = await router.user(request);
        const view = decisionView(decision);
        return decision.allowed ? { ...view, id: request.args.id, expires_at: new Date(decision.expiresAt).toISOString() } : view;
      },
    },
    {
      name: 'quota.settle',
      request: S.NatsSettle,
      reply: S.LimitsReply,
      async handle(body) {
        const item = settle(body);
        const settled = await router.user(settleRequest(serviceCaller(item.user_id), item.id, item));
        return { limits: limitViews(settled.limits) };
      },
    },
    {
      name: 'quota.release',
      request: S.NatsRelease,
      reply: S.ServiceReleased,
      async handle(body) {
        const item = release(body);
        await router.user(releaseRequest(serviceCaller(item.user_id), item.id));
        return { released: true };
      },
    },
    {
      name: 'sessions.verify',
      request: S.NatsVerify,
      reply: S.ServiceSession,
      async handle(body) {
        const { token } = verify(body);
        const claims = await tokens.verify(token);
        const credential: Credential = { kind: 'session', sessionId: claims.sessionId };
        const verified = await router.user({ userId: claims.userId, credential, op: 'auth.verify', args: {} });
        return { user_id: verified.userId, session_id: claims.sessionId, tier: verified.tier, expires_at: new Date(claims.expiresAt).toISOString() };
      },
    },
    { name: 'limiter.check', request: S.LimiterBody, reply: S.LimiterReply, handle: (body) => checkServiceLimiter(router, limiter(body)) },
    {
      // The admin's query (any user, by user, tier and resource): the platform's services act
      // for any user here, as they do for every other operation. Read from Postgres by
      // whichever node answers: no owner is involved.
      name: 'usage.get',
      request: S.ServiceUsageQuery,
      reply: S.UsagePage,
      handle(body) {
        checkJsonText(body);
        if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidRequestError('the body is a JSON object of query parameters');
        return usagePage(usage, usageQuery(body as Record<string, unknown>, { kind: 'admin' }, clock()));
      },
    },
  ];
}

/**
 * Reads a request body as HTTP reads one: every string well-formed (no U+0000, no lone
 * surrogate, in names and values alike), then the schema. A MessagePack body can carry any
 * string, so the text check runs on every body, not only on JSON with escapes.
 */
function reader<T extends TSchema>(schema: T): (body: unknown) => Static<T> {
  const validate = compile(schema);
  return function readBody(body) {
    checkJsonText(body);
    return validate(body);
  };
}

function consumeView(decision: QuotaDecision): Record<string, unknown> {
  // Allowed by a `fail_open` tier without its owner: no limits are known.
  if (decision.degraded === true) return { ...DEGRADED_ANSWER, degraded: true };
  return decisionView(decision);
}

/**
 * A decision as a normal reply. Refused: the limit that refused in `denied`, and when to try
 * again; or `exceeds_capacity` (no `retry_after_ms`) when the limit can never admit as much.
 */
function decisionView(decision: QuotaDecision): Record<string, unknown> {
  if (decision.allowed) return { allowed: true, limits: limitViews(decision.limits) };
  const refused: Record<string, unknown> = { allowed: false, limits: limitViews(decision.limits), denied: decision.denied };
  const refusal = refusalOf(decision);
  if (refusal.kind === 'exceeds_capacity') refused.exceeds_capacity = true;
  else refused.retry_after_ms = refusal.retryAfterMs;
  return refused;
}
