/**
 * The HTTP server: installs every route on a uWebSockets.js app and runs each request
 * through the same steps — request id, headers read before any await (uWebSockets.js frees
 * the request object when the handler returns), body read and validated, caller resolved,
 * handler run, answer or problem written corked.
 */

import uws, { type HttpRequest, type HttpResponse, type TemplatedApp, type us_listen_socket } from 'uWebSockets.js';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { type Caller, checkText, compile, HttpError, problem, problemFromError, truncate, type Validator } from '../api/index.js';
import type { ApiKeys, PresentedKey } from '../credentials/index.js';
import { API_KEY_REFUSED, ForbiddenError, InvalidRequestError, looksLikeApiKey, UnauthenticatedError } from '../shards/index.js';
import { bearerToken, type Credentials, resolveCaller, tokenMatches, WWW_AUTHENTICATE } from './auth.js';
import { collectBody, MAX_BODY_BYTES, parseJsonBody } from './body.js';
import { flatFieldsOf, flatMapsOf, parseFlatObject } from './flatJson.js';
import { LIBUS_LISTEN_EXCLUSIVE_PORT, listenFailure } from './listen.js';
import type { HttpMetrics } from './metrics.js';
import { retryAfterSeconds } from './rateLimitHeaders.js';
import { type Exchange, endStream, startStream, write, writeJson, writeProblem } from './respond.js';
import { pathParams, type Reply, type RequestContext, type RouteDefinition, uwsPattern } from './route.js';

export interface HttpServerOptions {
  routes: readonly RouteDefinition[];
  credentials: Credentials;
  adminToken: string | undefined;
  serviceToken: string | undefined;
  trustProxy: boolean;
  metrics: HttpMetrics;
  log: Logger;
  /** The access log (TALLY_ACCESS_LOG): one `request` line for this share (0–1) of requests. Absent: off. */
  accessLog?: { sample: number };
}

/** An exchange as the server tracks it: the status it answered, and the request whose body it awaits. */
type LiveExchange = Exchange & {
  status: number;
  /** Set while the body streams in: then only the client leaving can end the request. */
  reading: PendingRequest | null;
  /** Set while a streamed answer waits for the client to take more: called when it leaves instead. */
  waiting: (() => void) | null;
};

interface PendingRequest {
  route: InstalledRoute;
  exchange: LiveExchange;
  context: RequestContext<unknown>;
  authorization: string;
  contentType: string;
  /** On routes that read it: the raw query string, parsed with the body. */
  queryString: string;
  started: number;
}

interface InstalledRoute {
  definition: RouteDefinition;
  params: string[];
  validate: Validator | null;
  /** The body's members when its schema is a flat object (see flatJson.ts), else null. */
  flatFields: readonly string[] | null;
  /** The body's members the flat parser reads as maps of integers. */
  flatMaps: readonly string[];
  /** It has path parameters or keeps the client's address and user agent: text to check. */
  keepsText: boolean;
  label: string;
}

interface AccessLogLine {
  method: string;
  /** The route's template (`/v1/sessions/{id}`), or `unmatched`. */
  route: string;
  status: number;
  duration_ms: number;
  request_id: string;
  user_id?: string;
  key_id?: string;
}

const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});
/** Longer query strings are refused (the usage queries need a few hundred characters). */
const MAX_QUERY_LENGTH = 4096;
const NO_CALLER: Caller = Object.freeze({ userId: '', credential: Object.freeze({ kind: 'trusted' as const }) });
const REQUEST_ID = /^[\w.:-]{1,128}$/;
/** The status counted for a request whose client left before its answer (nginx's 499); never sent. */
const CLIENT_CLOSED_REQUEST = 499;

/**
 * Request ids this node makes up: a random prefix chosen at start, then a counter. Unique
 * across nodes and restarts like a UUID, for the price of formatting a number.
 */
const REQUEST_ID_PREFIX = `${randomBytes(6).toString('base64url')}-`;
let requestCounter = 0;
const nextRequestId = (): string => REQUEST_ID_PREFIX + (++requestCounter).toString(36);

export class HttpServer {
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private inflight = 0;
  /** Requests received since the server started (the console's request rate). */
  private received = 0;
  private idleWaiters: (() => void)[] = [];
  private draining = false;
  /**
   * The access log's logger, at info whatever the node's level (asked for on its own); null
   * when off. Without the node logger's redaction: a line holds only the fields `logRequest`
   * picks, none of them a credential, and the redaction's paths cost ~6 µs a line to walk.
   */
  private readonly accessLog: Logger | null;
  private readonly accessLogSample: number;

  constructor(private readonly options: HttpServerOptions) {
    this.app = uws.App();
    this.accessLogSample = options.accessLog?.sample ?? 0;
    this.accessLog = this.accessLogSample > 0 ? options.log.child({}, { level: 'info', redact: [] }) : null;
    const methodsByPath = new Map<string, string[]>();
    for (const definition of options.routes) {
      // The fast path answers before the edge's credential checks: only where keys are welcome.
      if (definition.fast !== undefined && definition.apiKeys !== true) throw new Error(`${definition.path}: a fast path needs apiKeys`);
      const installed: InstalledRoute = {
        definition,
        params: pathParams(definition.path),
        validate: definition.body === undefined ? null : compile(definition.body),
        flatFields: definition.body === undefined ? null : flatFieldsOf(definition.body),
        flatMaps: definition.body === undefined ? [] : flatMapsOf(definition.body),
        keepsText: pathParams(definition.path).length > 0 || definition.clientAddress === true,
        label: `${definition.method.toUpperCase()} ${definition.path}`,
      };
      const pattern = uwsPattern(definition.path);
      const method = definition.method === 'delete' ? 'del' : definition.method;
      this.app[method](pattern, (res, req) => this.serve(installed, res, req));
      methodsByPath.set(pattern, [...(methodsByPath.get(pattern) ?? []), definition.method.toUpperCase()]);
    }
    for (const [pattern, methods] of methodsByPath) {
      this.app.any(pattern, (res, req) =>
        this.refuse(res, req, new HttpError('method_not_allowed', `use ${methods.join(', ')}`), { Allow: methods.join(', ') }),
      );
    }
    this.app.any('/*', (res, req) => this.refuse(res, req, new HttpError('route_not_found', `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}`)));
  }

  /**
   * Listens exclusively: uWebSockets.js otherwise sets SO_REUSEPORT, and a second process on
   * the same port would silently take half the connections. Fails with a `ListenError`.
   */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onListen = (socket: us_listen_socket | false) => {
        if (socket === false) {
          listenFailure(host, port).then(reject, reject);
          return;
        }
        this.listenSocket = socket;
        resolve(uws.us_socket_local_port(socket));
      };
      // The typings lack the (host, port, options, callback) overload the addon has.
      (this.app.listen as unknown as (host: string, port: number, options: number, cb: typeof onListen) => void)(
        host,
        port,
        LIBUS_LISTEN_EXCLUSIVE_PORT,
        onListen,
      );
    });
  }

  /** From now on every answer asks its client to close the connection (the node is about to stop accepting). */
  closeConnections(): void {
    this.draining = true;
  }

  /** Stops accepting connections; requests already in flight still get their answers. */
  stopAccepting(): void {
    this.draining = true;
    if (this.listenSocket !== null) {
      uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
  }

  /**
   * Closes every connection now, kept-alive ones included (uWebSockets.js's `close`). Called
   * the moment no request is in flight after `stopAccepting`: a request that came on a
   * kept-alive connection later would otherwise be decided (even forwarded and charged) by a
   * process about to exit, and its answer lost with the connection. Closed first, it is
   * never read, and a balancer passes it to another node.
   */
  closeAll(): void {
    this.draining = true;
    (this.app as unknown as { close(): void }).close();
  }

  /** Resolves when no request is in flight, or after `timeoutMs`. Returns the count left. */
  waitIdle(timeoutMs: number): Promise<number> {
    if (this.inflight === 0) return Promise.resolve(0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.inflight), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(0);
      });
    });
  }

  get inFlight(): number {
    return this.inflight;
  }

  get requestsReceived(): number {
    return this.received;
  }

  private serve(route: InstalledRoute, res: HttpResponse, req: HttpRequest): void {
    const started = performance.now();
    const exchange = this.exchange(res, req);
    try {
      this.start(route, exchange, req, started);
    } catch (error) {
      // Nothing thrown while reading a request may escape into uWebSockets.js.
      this.fail(exchange, error);
    }
  }

  private start(route: InstalledRoute, exchange: LiveExchange, req: HttpRequest, started: number): void {
    const { res } = exchange;
    // Everything the request object holds is read now: it is gone once this handler returns.
    const authorization = req.getHeader('authorization');
    const contentType = req.getHeader('content-type');
    const idempotencyKey = route.definition.idempotencyKey === true ? req.getHeader('idempotency-key') : '';
    // The client's address and user agent are read only by the routes that record them.
    const clientAddress = route.definition.clientAddress === true;
    const userAgent = clientAddress ? req.getHeader('user-agent') : '';
    const ip = clientAddress ? this.clientAddress(res, this.options.trustProxy ? req.getHeader('x-forwarded-for') : '') : null;
    const params: Record<string, string> = route.params.length === 0 ? NO_PARAMS : {};
    for (let i = 0; i < route.params.length; i++) params[route.params[i]!] = safeDecode(req.getParameter(i) ?? '');
    const queryString = route.definition.query === undefined ? '' : (req.getQuery() ?? '');

    this.inflight++;
    this.received++;
    const request: PendingRequest = {
      route,
      exchange,
      started,
      authorization,
      contentType,
      queryString,
      context: {
        requestId: exchange.requestId,
        params,
        body: undefined,
        ip,
        userAgent: userAgent === '' ? null : truncate(userAgent, 512),
        idempotencyKey: idempotencyKey === '' ? null : idempotencyKey,
        caller: NO_CALLER,
        isAdmin: false,
        query: NO_PARAMS,
      },
    };
    if (route.validate === null) {
      this.proceed(request, null);
      return;
    }
    exchange.reading = request;
    collectBody(
      res,
      MAX_BODY_BYTES,
      (body) => this.proceed(request, body),
      (error) => this.finish(request, error),
    );
  }

  /**
   * With the body in hand: validates, resolves the caller, and answers at once when the
   * route can (a quota operation on an actor active here, with an API key); otherwise
   * continues asynchronously.
   */
  private proceed(request: PendingRequest, body: Uint8Array | null): void {
    request.exchange.reading = null;
    const { route, context } = request;
    const { definition } = route;
    let token: string | null;
    try {
      if (route.keepsText || context.idempotencyKey !== null) checkReceivedText(context);
      if (definition.query !== undefined) context.query = parseQuery(request.queryString);
      if (body !== null) {
        if (body.length > 0 && !isJson(request.contentType)) {
          throw new HttpError('unsupported_media_type', 'send the body as application/json');
        }
        // The body is a view into uWebSockets.js memory: it is parsed before this returns.
        // The flat parser reads printable ASCII only; the generic path checks every string.
        const parsed = (route.flatFields === null ? undefined : parseFlatObject(body, route.flatFields, route.flatMaps)) ?? parseJsonBody(body);
        context.body = route.validate!(parsed === undefined && definition.bodyOptional === true ? {} : parsed);
      }
      token = request.authorization === '' ? null : bearerToken(request.authorization);
      if (definition.fast !== undefined && token !== null && looksLikeApiKey(token)) {
        // The key's MAC is checked only if the user's actor is not here to check its hash
        // (credentials/apiKeys.ts): before the load or forward that follows.
        const { keys } = this.options.credentials;
        const presented = keys.presented(token);
        context.caller = presented.caller;
        let reply: Reply | undefined;
        try {
          reply = definition.fast(context as never);
        } catch (error) {
          // Refused before its actor checked the key (a body it cannot charge), or by it: the
          // access log names the caller only if the key's MAC holds, as before it was deferred.
          context.caller = macHolds(keys, presented) ? presented.caller : NO_CALLER;
          throw error;
        }
        if (reply !== undefined) {
          keys.accepted(presented);
          this.reply(request.exchange, reply);
          this.finish(request, null);
          return;
        }
        context.caller = keys.verified(presented);
      }
    } catch (error) {
      this.finish(request, error);
      return;
    }
    void this.answer(request, token);
  }

  /** Authenticates and runs the route's handler; never rejects. */
  private async answer(request: PendingRequest, token: string | null): Promise<void> {
    let failure: unknown = null;
    try {
      const { route, context } = request;
      const { definition } = route;
      // Only the routes that can act on it pay for the constant-time comparison.
      if (definition.auth === 'admin' || definition.auth === 'none') context.isAdmin = token !== null && tokenMatches(token, this.options.adminToken);
      switch (definition.auth) {
        case 'user': {
          if (token === null) throw new UnauthenticatedError('send Authorization: Bearer <session token or API key>');
          if (context.caller === NO_CALLER) {
            const caller = resolveCaller(token, this.options.credentials);
            context.caller = caller instanceof Promise ? await caller : caller;
          }
          // The route's own word, which the OpenAPI document states; the owner checks the scope.
          if (context.caller.credential.kind === 'key' && definition.apiKeys !== true) throw new ForbiddenError(API_KEY_REFUSED);
          break;
        }
        case 'admin':
          checkToken(token, this.options.adminToken, context.isAdmin, 'TALLY_ADMIN_TOKEN');
          break;
        case 'service':
          checkToken(token, this.options.serviceToken, token !== null && tokenMatches(token, this.options.serviceToken), 'TALLY_SERVICE_TOKEN');
          break;
        case 'none':
          break;
      }
      if (definition.abandonIfClientGone === true && request.exchange.clientGone) {
        this.finish(request, null);
        return;
      }
      const reply = await definition.handle(context as never);
      if (reply.stream !== undefined) await this.stream(request.exchange, reply);
      else this.reply(request.exchange, reply);
    } catch (error) {
      failure = error;
    }
    this.finish(request, failure);
  }

  private reply(exchange: LiveExchange, reply: Reply): void {
    exchange.status = reply.status;
    if (reply.text !== undefined) write(exchange, reply.status, reply.text, reply.headers, reply.contentType ?? 'text/plain');
    else writeJson(exchange, reply.status, reply.body, reply.headers, reply.contentType);
  }

  /**
   * Sends a streamed answer: the status and headers, then each piece as the route writes it,
   * waiting whenever uWebSockets.js reports backpressure until the client has taken the
   * backlog. A failure after the head cuts the connection instead of answering a problem:
   * the client sees a broken transfer, never a short answer that looks whole.
   */
  private async stream(exchange: LiveExchange, reply: Reply): Promise<void> {
    exchange.status = reply.status;
    if (!startStream(exchange, reply.status, reply.headers, reply.contentType ?? 'application/octet-stream')) return;
    const { res } = exchange;
    const write = (chunk: string): Promise<void> => {
      if (exchange.aborted) return Promise.reject(new ClientGoneError());
      let written = true;
      res.cork(() => {
        written = res.write(chunk);
      });
      if (written) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        exchange.waiting = () => reject(new ClientGoneError());
        res.onWritable(() => {
          exchange.waiting = null;
          resolve();
          return true;
        });
      });
    };
    try {
      await reply.stream!(write);
    } catch (error) {
      if (!(error instanceof ClientGoneError)) {
        this.options.log.error({ err: error, requestId: exchange.requestId }, 'streamed answer failed after its head: connection cut');
        exchange.status = 500;
      }
      if (!exchange.aborted) {
        exchange.aborted = true;
        res.close();
      }
      return;
    }
    endStream(exchange);
  }

  /** Answers with a problem if the request failed, then accounts for it. */
  private finish(request: PendingRequest, error: unknown): void {
    const { exchange } = request;
    exchange.reading = null;
    if (error !== null) this.fail(exchange, error);
    const status = exchange.clientGone ? CLIENT_CLOSED_REQUEST : exchange.status;
    const durationMs = performance.now() - request.started;
    this.options.metrics.observe(request.route.label, status, durationMs);
    if (this.accessLog !== null) {
      const { method, path } = request.route.definition;
      this.logRequest(method.toUpperCase(), path, status, durationMs, exchange.requestId, request.context.caller);
    }
    if (--this.inflight === 0 && this.idleWaiters.length > 0) {
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private fail(exchange: LiveExchange, error: unknown): void {
    const { problem: answer, retryAfterMs, unexpected } = problemFromError(error);
    if (unexpected) this.options.log.error({ err: error, requestId: exchange.requestId }, 'request failed');
    const headers: Record<string, string> = {};
    if (answer.status === 401) headers['WWW-Authenticate'] = WWW_AUTHENTICATE;
    if (retryAfterMs !== undefined && (answer.status === 429 || answer.status === 503)) headers['Retry-After'] = retryAfterSeconds(retryAfterMs);
    exchange.status = answer.status;
    writeProblem(exchange, answer, headers);
  }

  private refuse(res: HttpResponse, req: HttpRequest, error: HttpError, headers?: Record<string, string>): void {
    const exchange = this.exchange(res, req);
    const answer = problem(error.code, error.detail);
    exchange.status = answer.status;
    writeProblem(exchange, answer, headers);
    this.options.metrics.observe('unmatched', answer.status, 0);
    // No path: an unmatched one is the client's text, and may carry what it should not have sent.
    if (this.accessLog !== null) this.logRequest(req.getMethod().toUpperCase(), 'unmatched', answer.status, 0, exchange.requestId, NO_CALLER);
  }

  /**
   * One access-log line, for a sampled share of requests. What the server chose or checked
   * only: never a header, the query string, a token or key (of the caller, its ids).
   */
  private logRequest(method: string, route: string, status: number, durationMs: number, requestId: string, caller: Caller): void {
    if (this.accessLogSample < 1 && Math.random() >= this.accessLogSample) return;
    const line: AccessLogLine = { method, route, status, duration_ms: Math.round(durationMs * 100) / 100, request_id: requestId };
    // Who called, once its credential held: a 401 means the owner refused it (a revoked key or session).
    if (caller !== NO_CALLER && status !== 401) {
      line.user_id = caller.userId;
      if (caller.credential.kind === 'key') line.key_id = caller.credential.keyId;
    }
    this.accessLog!.info(line, 'request');
  }

  private exchange(res: HttpResponse, req: HttpRequest): LiveExchange {
    const sent = req.getHeader('x-request-id');
    const requestId = sent === '' ? nextRequestId() : REQUEST_ID.test(sent) ? sent : nextRequestId();
    const exchange: LiveExchange = {
      res,
      aborted: false,
      clientGone: false,
      requestId,
      closeConnection: this.draining,
      status: 0,
      reading: null,
      waiting: null,
    };
    res.onAborted(() => {
      exchange.aborted = true;
      exchange.clientGone = true;
      exchange.waiting?.();
      // A request whose body never completes would otherwise stay in flight for good.
      if (exchange.reading !== null) this.finish(exchange.reading, null);
    });
    return exchange;
  }

  private clientAddress(res: HttpResponse, forwardedFor: string): string {
    if (forwardedFor !== '') {
      // The last hop is the one our own load balancer appended; earlier ones are the client's word.
      const hops = forwardedFor.split(',');
      const last = hops[hops.length - 1]!.trim();
      if (last !== '') return truncate(last, 64);
    }
    return Buffer.from(res.getRemoteAddressAsText()).toString();
  }
}

/** The client left while a streamed answer was being written. */
class ClientGoneError extends Error {
  override readonly name = 'ClientGoneError';
}

/**
 * A query string's parameters (`application/x-www-form-urlencoded`, as URLSearchParams reads
 * it), each at most once and well-formed text; the route's handler checks names and values.
 */
function parseQuery(queryString: string): Readonly<Record<string, string>> {
  if (queryString.length > MAX_QUERY_LENGTH) throw new InvalidRequestError(`the query string is limited to ${MAX_QUERY_LENGTH} characters`);
  const query: Record<string, string> = Object.create(null);
  for (const [name, value] of new URLSearchParams(queryString)) {
    if (Object.hasOwn(query, name)) throw new InvalidRequestError(`the query parameter "${truncate(name, 64)}" is given twice`);
    checkText(name, 'a query parameter name');
    checkText(value, `the query parameter "${truncate(name, 64)}"`);
    query[name] = value;
  }
  return query;
}

/** The path parameters and kept headers are well-formed text, and the Idempotency-Key is short. */
function checkReceivedText(context: RequestContext<unknown>): void {
  const { idempotencyKey, userAgent, ip, params } = context;
  if (idempotencyKey !== null) {
    if (idempotencyKey.length > 255) throw new InvalidRequestError('Idempotency-Key is limited to 255 characters');
    checkText(idempotencyKey, 'the Idempotency-Key header');
  }
  if (userAgent !== null) checkText(userAgent, 'the User-Agent header');
  if (ip !== null) checkText(ip, 'the client address (X-Forwarded-For)');
  for (const name in params) checkText(params[name]!, `the path parameter "${name}"`);
}

function checkToken(token: string | null, configured: string | undefined, matches: boolean, variable: string): void {
  if (configured === undefined) throw new ForbiddenError(`this route is disabled: ${variable} is not set`);
  if (token === null || !matches) throw new UnauthenticatedError();
}

function isJson(contentType: string): boolean {
  if (contentType === 'application/json') return true;
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    // A malformed escape (a lone %): the raw text is the parameter; the text checks and the route judge it.
    return value;
  }
}

/** Whether a presented key's MAC holds (checked now if it was deferred). */
function macHolds(keys: ApiKeys, presented: PresentedKey): boolean {
  try {
    keys.verified(presented);
    return true;
  } catch {
    return false;
  }
}
