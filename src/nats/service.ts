/**
 * The internal NATS API: the NATS service `tally` (@nats-io/services, so `$SRV.PING|INFO|STATS`
 * find it), run by every node in one queue group. A request reaches any node, names its user
 * by `user_id`, and goes through the same router as an HTTP request: to the owner, with
 * every guarantee of a local request.
 *
 * - Bodies are JSON, or MessagePack when the request's `content-type` header is
 *   `application/msgpack`; the reply uses the request's encoding.
 * - A decision is a normal reply, allowed or not. Bad input, an unknown user, an invalid
 *   token or an unreachable owner is a service error: the `Nats-Service-Error-Code` header
 *   holds the HTTP status the same error gets over HTTP, and the body is its problem.
 * - `quota.consume` and `quota.get` also take `{items: […]}` (up to 1000): every item is
 *   decided on its own and answered in order in `{results: […]}`, where an item that failed
 *   is `{error: problem}`. The router sends each owner its items in batches, all in parallel.
 * - Platform services act for a user: no session or key is checked, but a blocked user is
 *   refused. Who may send here is NATS's business (subject permissions), as with the node
 *   subjects.
 */
import { type Service, type ServiceMsg, Svcm } from '@nats-io/services';
import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import type { Static, TSchema } from '@sinclair/typebox';
import { Packr } from 'msgpackr';
import type { Logger } from 'pino';
import {
  type Caller,
  checkJsonText,
  checkServiceLimiter,
  compile,
  consumeRequest,
  DEGRADED_ANSWER,
  HttpError,
  limitViews,
  type Problem,
  problemFromError,
  type Router,
  refusalOf,
  releaseRequest,
  reserveRequest,
  schemas as S,
  settleRequest,
  type UsageReader,
  usagePage,
  usageQuery,
} from '../api/index.js';
import type { SessionTokens } from '../credentials/index.js';
import { type Credential, InvalidRequestError, type QuotaDecision, TallyError } from '../shards/index.js';

/** The service's name, its queue group (every node answers in one), and the prefix of its subjects. */
const SERVICE_NAME = 'tally';
const QUEUE_GROUP = 'tally';
const SUBJECT_PREFIX = 'tally.v1';
const MSGPACK = 'application/msgpack';
const SERVICE: Credential = Object.freeze({ kind: 'service' as const });

const packr = new Packr({ useRecords: false, moreTypes: false });

export interface NatsApiDeps {
  router: Router;
  tokens: SessionTokens;
  /** The usage history (the node's store), for `usage.get`. */
  usage: UsageReader;
  clock: () => number;
  log: Logger;
  version: string;
  nodeId: string;
  /** Decisions in flight at once (a batch counts each item); a request past it is answered 503. */
  maxInFlight: number;
}

/** One endpoint: its subject's last part and what it does with a validated body. */
interface Operation {
  name: string;
  handle(body: unknown): unknown;
}

export class NatsApi {
  private inFlight = 0;
  private idle: (() => void) | null = null;

  private constructor(
    private readonly service: Service,
    private readonly log: Logger,
    private readonly maxInFlight: number,
  ) {}

  static async start(nc: NatsConnection, deps: NatsApiDeps): Promise<NatsApi> {
    const service = await new Svcm(nc).add({
      name: SERVICE_NAME,
      version: deps.version,
      description: 'Tally: quota decisions, session checks and keyed limits',
      queue: QUEUE_GROUP,
      metadata: { node: deps.nodeId },
    });
    const api = new NatsApi(service, deps.log, deps.maxInFlight);
    const group = service.addGroup(SUBJECT_PREFIX);
    for (const operation of operations(deps)) {
      group.addEndpoint(operation.name.replace('.', '_'), { subject: operation.name, handler: (_error, msg) => api.answer(operation, msg) });
    }
    return api;
  }

  /** Stops taking requests, then waits (at most `timeoutMs`) for those being answered. */
  async stop(timeoutMs: number): Promise<void> {
    await this.service
      .stop()
      .catch((error: unknown) => this.log.warn({ err: error }, 'NATS API: stopping the service failed; waiting for the requests in flight all the same'));
    if (this.inFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        this.idle = resolve;
      }),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (this.inFlight > 0) this.log.warn({ left: this.inFlight }, 'NATS API: stopping with requests still being answered');
  }

  private answer(operation: Operation, msg: ServiceMsg): void {
    const msgpack = msg.headers?.get('content-type') === MSGPACK;
    let answer: unknown;
    let weight = 1;
    try {
      const body = decodeBody(msg.data, msgpack);
      weight = decisionsIn(body);
      // Refused before any work: a flood of requests cannot queue without bound.
      if (this.inFlight + weight > this.maxInFlight) throw AT_CAPACITY;
      answer = operation.handle(body);
    } catch (error) {
      this.fail(msg, error, msgpack);
      return;
    }
    if (!(answer instanceof Promise)) {
      reply(msg, answer, msgpack);
      return;
    }
    this.inFlight += weight;
    answer
      .then(
        (value) => reply(msg, value, msgpack),
        (error: unknown) => this.fail(msg, error, msgpack),
      )
      .finally(() => {
        this.inFlight -= weight;
        if (this.inFlight === 0) this.idle?.();
      });
  }

  private fail(msg: ServiceMsg, error: unknown, msgpack: boolean): void {
    const { problem: body, retryAfterMs, unexpected } = problemFromError(error);
    if (unexpected) this.log.error({ err: error, subject: msg.subject }, 'NATS API: request failed');
    if (retryAfterMs !== undefined) body.retry_after_ms = retryAfterMs;
    const options = msgpack ? { headers: msgpackHeaders() } : {};
    msg.respondError(body.status, body.detail, encodeBody(body, msgpack), options);
  }
}

const AT_CAPACITY = new TallyError('at_capacity', 'this node has as many NATS API requests in flight as it takes; try again shortly', { retryAfterMs: 100 });

/** How many decisions a body asks for: the items of a batch, or one. */
function decisionsIn(body: unknown): number {
  if (typeof body !== 'object' || body === null || !('items' in body) || !Array.isArray(body.items)) return 1;
  return Math.max(1, body.items.length);
}

/** A platform service acts for the user it names: no session or key is checked, a blocked user is refused. */
const serviceCaller = (userId: string): Caller => ({ userId, credential: SERVICE });

function operations({ router, tokens, usage, clock }: NatsApiDeps): Operation[] {
  const consume = itemHandler(S.NatsConsume, (item) => {
    const request = consumeRequest(serviceCaller(item.user_id), item, item.idempotency_key);
    const decided = router.tryUser(request);
    if (decided !== undefined) return consumeView(decided);
    return router.user(request).then(consumeView);
  });
  const get = itemHandler(S.NatsGet, (item) =>
    router
      .user({ userId: item.user_id, credential: SERVICE, op: 'quota.get', args: {} })
      .then((quota) => ({ tier: quota.tier, limits: limitViews(quota.limits) })),
  );
  const reserve = reader(S.NatsReserve);
  const settle = reader(S.NatsSettle);
  const release = reader(S.NatsRelease);
  const verify = reader(S.NatsVerify);
  const limiter = reader(S.LimiterBody);
  return [
    { name: 'quota.consume', handle: batchable(consume) },
    { name: 'quota.get', handle: batchable(get) },
    {
      name: 'quota.reserve',
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
      async handle(body) {
        const item = settle(body);
        const settled = await router.user(settleRequest(serviceCaller(item.user_id), item.id, item));
        return { limits: limitViews(settled.limits) };
      },
    },
    {
      name: 'quota.release',
      async handle(body) {
        const item = release(body);
        await router.user(releaseRequest(serviceCaller(item.user_id), item.id));
        return { released: true };
      },
    },
    {
      name: 'sessions.verify',
      async handle(body) {
        const { token } = verify(body);
        const claims = await tokens.verify(token);
        const credential: Credential = { kind: 'session', sessionId: claims.sessionId };
        const verified = await router.user({ userId: claims.userId, credential, op: 'auth.verify', args: {} });
        return { user_id: verified.userId, session_id: claims.sessionId, tier: verified.tier, expires_at: new Date(claims.expiresAt).toISOString() };
      },
    },
    {
      name: 'limiter.check',
      handle: (body) => checkServiceLimiter(router, limiter(body)),
    },
    {
      // The admin's query (any user, by user, tier and resource): the platform's services act
      // for any user here, as they do for every other operation. Read from Postgres by
      // whichever node answers: no owner is involved.
      name: 'usage.get',
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

/** Reads one item and runs it; returns its answer, or a promise of it. Throws on bad input. */
function itemHandler<T extends TSchema>(schema: T, run: (item: Static<T>) => unknown): (item: unknown) => unknown {
  const read = reader(schema);
  return (item) => run(read(item));
}

/**
 * One item, or `{items}`: each item decided on its own, answered in order. All items are
 * started before any is awaited, so the router batches those for one owner together.
 */
function batchable(one: (item: unknown) => unknown): (body: unknown) => unknown {
  const envelope = compile(S.NatsBatch);
  return (body) => {
    if (body === null || typeof body !== 'object' || !('items' in body)) return one(body);
    const { items } = envelope(body);
    const results: unknown[] = new Array(items.length);
    const pending: Promise<void>[] = [];
    for (let i = 0; i < items.length; i++) {
      try {
        const answer = one(items[i]);
        if (answer instanceof Promise) {
          pending.push(
            answer.then(
              (value) => {
                results[i] = value;
              },
              (error: unknown) => {
                results[i] = itemError(error);
              },
            ),
          );
        } else {
          results[i] = answer;
        }
      } catch (error) {
        results[i] = itemError(error);
      }
    }
    if (pending.length === 0) return { results };
    return Promise.all(pending).then(() => ({ results }));
  };
}

function itemError(error: unknown): { error: Problem } {
  const { problem: body, retryAfterMs } = problemFromError(error);
  if (retryAfterMs !== undefined) body.retry_after_ms = retryAfterMs;
  return { error: body };
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

function decodeBody(data: Uint8Array, msgpack: boolean): unknown {
  if (data.length === 0) return {};
  try {
    return msgpack ? packr.unpack(data) : JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    throw new HttpError('malformed_json', msgpack ? 'the request body is not valid MessagePack' : 'the request body is not valid JSON');
  }
}

function encodeBody(value: unknown, msgpack: boolean): Uint8Array | string {
  return msgpack ? packr.pack(value) : JSON.stringify(value);
}

function msgpackHeaders(): MsgHdrs {
  const headers = natsHeaders();
  headers.set('content-type', MSGPACK);
  return headers;
}

function reply(msg: ServiceMsg, value: unknown, msgpack: boolean): void {
  msg.respond(encodeBody(value, msgpack), msgpack ? { headers: msgpackHeaders() } : undefined);
}
