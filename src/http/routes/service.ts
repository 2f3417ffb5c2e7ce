/**
 * The service API over HTTP, for a platform service that cannot reach NATS (the HTTP
 * transport of @tally/client): `POST /v1/service/…` with the service token takes the body
 * of the NATS subject of the same name and answers its reply, because both run src/api's
 * `serviceOperations`. A refusal is a 200 reply (`allowed: false`), a batch a 200 with
 * `results`; only a failure of the whole request is a problem, with the status NATS gives
 * it in `Nats-Service-Error-Code`.
 */
import {
  type ApiKeyCallers,
  schemas as S,
  type ServiceOperation,
  type ServiceOperationName,
  type SessionTokenVerifier,
  serviceOperations,
  serviceProblem,
} from '../../api/index.js';
import { WWW_AUTHENTICATE } from '../auth.js';
import { retryAfterSeconds } from '../rateLimitHeaders.js';
import { type Reply, type ResponseSpec, type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

interface ServiceRoute {
  path: string;
  summary: string;
  /** A decision the client never hears of must not stand: not started once the client has gone. */
  decides?: boolean;
  /** What a 200 holds. */
  answers: string;
  /** The problem answers this operation adds to those of every service route. */
  problems: Record<number, ResponseSpec>;
}

const BLOCKED: ResponseSpec = { description: 'TALLY_SERVICE_TOKEN is not set, or the user is blocked' };
const NO_USER: ResponseSpec = { description: 'no such user' };
const SPLIT: ResponseSpec = { description: 'the body is larger than 64 KiB: send a batch this large in parts' };
const BATCH = 'or, for `{items}`, `{results}`: one per item, in order, an item that failed being `{error: problem}`';

/** `limiter.check` has its route already: `POST /v1/limiter/check` (quota.ts), with the same body and reply. */
const ROUTES: Record<Exclude<ServiceOperationName, 'limiter.check'>, ServiceRoute> = {
  'quota.consume': {
    path: '/v1/service/quota/consume',
    summary: 'Consume for a user named by `user_id` or `api_key`, or for up to 1000 items at once (`tally.v1.quota.consume`)',
    decides: true,
    answers: `the decision, allowed or not (a refusal charged nothing); ${BATCH}`,
    problems: {
      401: { description: 'missing or invalid service token, or the `api_key` of a single consume is not a valid key' },
      403: { description: 'TALLY_SERVICE_TOKEN is not set, the user is blocked, or the `api_key` lacks the quota scope' },
      404: NO_USER,
      413: SPLIT,
      422: { description: 'the `idempotency_key` was used for another charge' },
    },
  },
  'quota.get': {
    path: '/v1/service/quota/get',
    summary: 'A user’s limits without spending, or up to 1000 users’ at once (`tally.v1.quota.get`)',
    answers: `the tier and limits; ${BATCH}`,
    problems: { 403: BLOCKED, 404: NO_USER, 413: SPLIT },
  },
  'quota.reserve': {
    path: '/v1/service/quota/reserve',
    summary: 'Hold `cost` and `amounts` for a user (`tally.v1.quota.reserve`)',
    decides: true,
    answers: 'held, with the hold’s `id`; or refused, as a consume is (nothing held)',
    problems: { 403: BLOCKED, 404: NO_USER },
  },
  'quota.settle': {
    path: '/v1/service/quota/settle',
    summary: 'Settle a user’s hold at what it took (`tally.v1.quota.settle`)',
    answers: 'settled: the limits',
    problems: {
      403: BLOCKED,
      404: { description: 'no such user, or no such hold (settled, released or expired)' },
      422: { description: 'the settlement contradicts its hold; the hold stays open' },
    },
  },
  'quota.release': {
    path: '/v1/service/quota/release',
    summary: 'Release a user’s hold (`tally.v1.quota.release`)',
    answers: 'released',
    problems: { 403: BLOCKED, 404: { description: 'no such user, or no such hold' } },
  },
  'sessions.verify': {
    path: '/v1/service/sessions/verify',
    summary: 'Check a session token: its user, session and tier (`tally.v1.sessions.verify`)',
    answers: 'the session is live',
    problems: {
      401: { description: 'missing or invalid service token, or the session token is forged, expired or revoked' },
      403: BLOCKED,
    },
  },
  'usage.get': {
    path: '/v1/service/usage',
    summary: 'Usage across users, the query of `GET /v1/admin/usage` in a body (`tally.v1.usage.get`)',
    answers: 'a page of usage',
    problems: {},
  },
};

export function serviceRoutes(deps: RouteDeps, credentials: { tokens: SessionTokenVerifier; keys: ApiKeyCallers }): RouteDefinition[] {
  const { router, usage, clock } = deps;
  const operations = serviceOperations({ router, usage, clock, tokens: credentials.tokens, keys: credentials.keys });
  return operations.flatMap((operation) => (operation.name === 'limiter.check' ? [] : [serviceRoute(operation, ROUTES[operation.name])]));
}

function serviceRoute(operation: ServiceOperation, { path, summary, decides, answers, problems }: ServiceRoute): RouteDefinition {
  return route({
    method: 'post',
    path,
    summary,
    tag: 'service',
    auth: 'service',
    body: S.ServiceBody,
    // An empty body is `{}`, as over NATS.
    bodyOptional: true,
    documentedBody: operation.request,
    abandonIfClientGone: decides === true,
    responses: { 200: { description: answers, schema: operation.reply }, ...problems },
    handle({ body }) {
      let answer: unknown;
      try {
        answer = operation.handle(body);
      } catch (error) {
        return failed(error);
      }
      return answer instanceof Promise ? answer.then(answered, failed) : answered(answer);
    },
  });
}

function answered(body: unknown): Reply {
  return { status: 200, body };
}

/** A failed request as NATS answers it: its problem, with `retry_after_ms` (and `Retry-After`) where waiting helps. */
function failed(error: unknown): Reply {
  const { problem, unexpected } = serviceProblem(error);
  // Thrown on: the server logs it and answers a 500 that reveals nothing.
  if (unexpected) throw error;
  const headers: Record<string, string> = {};
  if (problem.status === 401) headers['WWW-Authenticate'] = WWW_AUTHENTICATE;
  if (typeof problem.retry_after_ms === 'number') headers['Retry-After'] = retryAfterSeconds(problem.retry_after_ms);
  return { status: problem.status, body: problem, headers, contentType: 'application/problem+json' };
}
