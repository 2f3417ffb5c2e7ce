/**
 * Tally in front of a Hono app's routes (Hono runs on Node, Bun and edge runtimes):
 *
 * ```ts
 * import { tallyLimit } from '@tally/client/hono';
 * const tally = await TallyClient.nats(nc);
 * app.use('/v1/*', tallyLimit({ client: tally }));
 * ```
 *
 * Each request is charged to its caller: the Tally API key in `Authorization: Bearer tk_…`
 * (checked by Tally), or whoever `identify` says. An allowed request goes on, and its
 * response carries the IETF `RateLimit-Policy` and `RateLimit` headers of the tightest limit
 * (structured fields, as Tally's own HTTP API sends them). A refused one is answered 429 with
 * `Retry-After` and a problem+json body, without reaching the route.
 */
import type { Context, MiddlewareHandler } from 'hono';
import type { TallyClient } from './client.js';
import { ForbiddenError, NotFoundError, TallyError, UnauthenticatedError } from './errors.js';
import type { ConsumeOptions, Decision, LimitState, Subject } from './types.js';

export interface TallyLimitOptions {
  client: TallyClient;
  /**
   * Who the request is for: a Tally user id, `{apiKey}`, or null for nobody. Default: the API
   * key in `Authorization: Bearer tk_…`.
   */
  identify?: (c: Context) => Subject | null | undefined | Promise<Subject | null | undefined>;
  /** What the request costs (`cost`, `resource`, `amounts`), fixed or per request. Default: a cost of 1. */
  charge?: ConsumeOptions | ((c: Context) => ConsumeOptions | Promise<ConsumeOptions>);
  /** A request nobody is identified for: refused with 401 (`'reject'`, the default), or let through uncharged (`'allow'`). */
  anonymous?: 'reject' | 'allow';
  /** Passed to every consume: its timeout, and what to do when Tally cannot decide. */
  timeout?: number;
  onUnavailable?: 'allow' | 'deny';
}

/** The variable the decision is kept in for the routes: `c.get('tally')`. */
export const DECISION_KEY = 'tally';

const KEY_PREFIX = 'tk_';

export function tallyLimit(options: TallyLimitOptions): MiddlewareHandler {
  const identify = options.identify ?? bearerKey;
  return async (c, next) => {
    const subject = await identify(c);
    if (subject === null || subject === undefined) {
      if (options.anonymous === 'allow') return next();
      return problem(c, 401, 'unauthenticated', 'this route needs an API key: `Authorization: Bearer tk_…`', { 'WWW-Authenticate': 'Bearer' });
    }
    const charge = typeof options.charge === 'function' ? await options.charge(c) : (options.charge ?? {});
    let decision: Decision;
    try {
      decision = await options.client.consume(subject, withCall(charge, options));
    } catch (error) {
      return refusedByError(c, error);
    }
    const headers = rateLimitHeaders(decision.limits);
    if (!decision.allowed) {
      if (decision.retryAfterMs !== undefined) headers['Retry-After'] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
      const detail = decision.exceedsCapacity
        ? `this request costs more than the limit "${decision.denied}" can ever admit`
        : `the limit "${decision.denied ?? 'unknown'}" is reached; try again later`;
      const extensions: Record<string, unknown> = { limits: decision.limits.map(limitView) };
      if (decision.retryAfterMs !== undefined) extensions.retry_after_ms = decision.retryAfterMs;
      return problem(c, 429, 'rate-limited', detail, headers, extensions);
    }
    c.set(DECISION_KEY as never, decision as never);
    await next();
    for (const [name, value] of Object.entries(headers)) c.res.headers.set(name, value);
  };
}

/** The API key in `Authorization: Bearer tk_…`, if any. */
function bearerKey(c: Context): Subject | null {
  const authorization = c.req.header('authorization');
  if (authorization === undefined || authorization.slice(0, 7).toLowerCase() !== 'bearer ') return null;
  const token = authorization.slice(7).trim();
  return token.startsWith(KEY_PREFIX) ? { apiKey: token } : null;
}

function withCall(charge: ConsumeOptions, options: TallyLimitOptions): ConsumeOptions {
  const call: ConsumeOptions = { ...charge };
  if (options.timeout !== undefined) call.timeout = options.timeout;
  if (options.onUnavailable !== undefined) call.onUnavailable = options.onUnavailable;
  return call;
}

/** A consume that failed: the caller's fault (401, 403) or Tally's (503), never the route. */
function refusedByError(c: Context, error: unknown): Response {
  if (error instanceof UnauthenticatedError || error instanceof NotFoundError) {
    return problem(c, 401, 'unauthenticated', 'the API key is not valid', { 'WWW-Authenticate': 'Bearer' });
  }
  if (error instanceof ForbiddenError) return problem(c, 403, 'forbidden', error.message);
  const retryAfterMs = error instanceof TallyError ? (error.retryAfterMs ?? 1000) : 1000;
  return problem(c, 503, 'quota-unavailable', 'the quota service cannot decide this request now', {
    'Retry-After': String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
  });
}

/**
 * The IETF rate-limit headers (structured fields) of the tightest limit: the one with the
 * smallest share left, then the earliest reset.
 */
function rateLimitHeaders(limits: readonly LimitState[]): Record<string, string> {
  let tightest: LimitState | undefined;
  for (const limit of limits) {
    if (tightest === undefined) tightest = limit;
    const share = limit.remaining / limit.limit;
    const best = tightest.remaining / tightest.limit;
    if (share < best || (share === best && limit.resetAt < tightest.resetAt)) tightest = limit;
  }
  if (tightest === undefined) return {};
  const name = JSON.stringify(tightest.name.replace(/[^\x20-\x7e]/g, '?'));
  const resetSeconds = Math.max(0, Math.ceil((tightest.resetAt.getTime() - Date.now()) / 1000));
  return {
    'RateLimit-Policy': `${name};q=${tightest.limit}`,
    RateLimit: `${name};r=${tightest.remaining};t=${resetSeconds}`,
  };
}

/** A limit as Tally's own problem documents spell it. */
const limitView = (limit: LimitState) => ({
  name: limit.name,
  kind: limit.kind,
  limit: limit.limit,
  remaining: limit.remaining,
  reset_at: limit.resetAt.toISOString(),
});

function problem(
  c: Context,
  status: 401 | 403 | 429 | 503,
  code: string,
  detail: string,
  headers: Record<string, string> = {},
  extensions: Record<string, unknown> = {},
): Response {
  const title = { 401: 'Unauthorized', 403: 'Forbidden', 429: 'Too Many Requests', 503: 'Service Unavailable' }[status];
  const body = JSON.stringify({ type: `urn:tally:problem:${code}`, title, status, detail, ...extensions });
  return c.body(body, status, { ...headers, 'Content-Type': 'application/problem+json' });
}
