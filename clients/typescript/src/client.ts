/**
 * Tally's client: one interface over NATS or HTTP.
 *
 * ```ts
 * const tally = await TallyClient.nats(nc);               // or TallyClient.http({url, token})
 * const decision = await tally.consume(userId, { amounts: { tokens: 512 } });
 * if (!decision.allowed) return tooMany(decision.retryAfterMs);
 * ```
 *
 * Calls are batched by the client (dispatch.ts) and, over NATS, sent straight to the node that
 * owns the user (shardMap.ts). Results are typed, a refusal is a result (`allowed: false`),
 * and every failure is a TallyError subclass (errors.ts).
 */
import { Dispatcher, type DispatchStats } from './dispatch.js';
import { OwnerUnavailableError, TimeoutError, UnavailableError } from './errors.js';
import { type HttpOptions, HttpTransport } from './http.js';
import { type NatsOptions, NatsTransport } from './nats.js';
import type { Operation, Transport } from './transport.js';
import {
  type CallOptions,
  type ConsumeOptions,
  chargeBody,
  type Decision,
  decisionFrom,
  type LimiterDecision,
  type LimitState,
  limiterFrom,
  limitsFrom,
  type Quota,
  quotaFrom,
  type ReserveOptions,
  type Subject,
  sessionFrom,
  type UsagePage,
  type UsageQuery,
  usageBody,
  usageFrom,
  type VerifiedSession,
} from './types.js';

export interface ClientOptions {
  /** A call's timeout when it gives none, in ms (default 2000). */
  timeout?: number;
  /**
   * How long calls are collected into one message, in ms: 0 (the default) sends what one turn
   * of the event loop made; at most 1.
   */
  batchWindowMs?: number;
  /**
   * Items in one message, at most (1 to 1000, the default). Smaller messages let Tally decide
   * the first while the client still writes the next: with 512 callers on one node, messages
   * of 128 made 1.6 times the decisions a second of one message per turn (bench/README.md).
   */
  maxBatch?: number;
}

type NatsConnection = Parameters<typeof NatsTransport.connect>[0];

const DEFAULT_TIMEOUT_MS = 2000;
/** The user id an API key names (`tk_<user id>_…`): the key routes to its owner without a lookup. */
const KEY_USER = /^tk_(u[a-z2-7]{20})_/;

export class TallyClient {
  private readonly dispatcher: Dispatcher;
  private readonly timeoutMs: number;

  /** The generic keyed limiter (`limiter.check`), shared with Tally's HTTP `POST /v1/limiter/check`. */
  readonly limiter = {
    check: (key: string, options: { limit: number; windowMs: number; cost?: number } & Omit<CallOptions, 'onUnavailable'>): Promise<LimiterDecision> => {
      const body: Record<string, unknown> = { key, limit: options.limit, window_ms: options.windowMs };
      if (options.cost !== undefined) body.cost = options.cost;
      const prefix = this.transport.map?.limiterPrefix;
      return this.send('limiter.check', body, prefix === undefined ? null : prefix + key, options, false).then(limiterFrom);
    },
  };

  private constructor(
    private readonly transport: Transport,
    options: ClientOptions,
  ) {
    const window = options.batchWindowMs ?? 0;
    if (!(window >= 0 && window <= 1)) throw new RangeError('batchWindowMs is between 0 and 1');
    const maxBatch = options.maxBatch ?? transport.maxItems;
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1 && maxBatch <= transport.maxItems))
      throw new RangeError(`maxBatch is an integer from 1 to ${transport.maxItems}`);
    this.timeoutMs = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.dispatcher = new Dispatcher(transport, window, maxBatch);
  }

  /** A client on a NATS connection the caller owns (and closes); fetches the shard map before it resolves. */
  static async nats(nc: NatsConnection, options: ClientOptions & NatsOptions = {}): Promise<TallyClient> {
    return new TallyClient(await NatsTransport.connect(nc, options), options);
  }

  /** A client over HTTP with the service token. */
  static http(options: ClientOptions & HttpOptions): TallyClient {
    return new TallyClient(new HttpTransport(options), options);
  }

  /** Messages and items sent, and `moved` answers, since the client was made. */
  get stats(): Readonly<DispatchStats> {
    return this.dispatcher.stats;
  }

  /** Whether calls are routed to owners (a shard map is held). */
  get routed(): boolean {
    return this.transport.map !== null;
  }

  /**
   * Charges the user, all or nothing across its limits. `subject` is a user id, or
   * `{apiKey}` for the key a caller presented (Tally checks it, as over HTTP).
   */
  async consume(subject: Subject, options: ConsumeOptions = {}): Promise<Decision> {
    const item = chargeBody(options);
    let routeKey: string | null;
    if (typeof subject === 'string') {
      item.user_id = subject;
      routeKey = subject;
    } else {
      item.api_key = subject.apiKey;
      routeKey = KEY_USER.exec(subject.apiKey)?.[1] ?? null;
    }
    if (options.idempotencyKey !== undefined) item.idempotency_key = options.idempotencyKey;
    try {
      return decisionFrom(await this.send('quota.consume', item, routeKey, options, options.idempotencyKey !== undefined));
    } catch (error) {
      return unavailable(error, options.onUnavailable);
    }
  }

  /** The user's tier and limits, without charging. */
  async get(userId: string, options: Omit<CallOptions, 'onUnavailable'> = {}): Promise<Quota> {
    return quotaFrom(await this.send('quota.get', { user_id: userId }, userId, options, true));
  }

  /**
   * Holds a charge whose real cost is known only afterwards (an LLM call): allowed, with a
   * `hold` to `settle` or `release`; or refused like a consume (`hold` null).
   */
  async reserve(userId: string, options: ReserveOptions = {}): Promise<Reservation> {
    const body: Record<string, unknown> = { user_id: userId, ...chargeBody(options) };
    if (options.ttlMs !== undefined) body.ttl_ms = options.ttlMs;
    let answer: Record<string, unknown>;
    try {
      answer = await this.send('quota.reserve', body, userId, options, false);
    } catch (error) {
      return { ...unavailable(error, options.onUnavailable), hold: null };
    }
    const decision = decisionFrom(answer);
    if (!decision.allowed || typeof answer.id !== 'string') return { ...decision, hold: null };
    return { ...decision, hold: new Hold(this, userId, answer.id, new Date(answer.expires_at as string)) };
  }

  /** The session a token stands for; an UnauthenticatedError when it is forged, expired or revoked. */
  async verifySession(token: string, options: Omit<CallOptions, 'onUnavailable'> = {}): Promise<VerifiedSession> {
    return sessionFrom(await this.send('sessions.verify', { token }, null, options, true));
  }

  /** Recorded usage, as the admin's usage query answers it (a billing job's view). */
  async usage(query: UsageQuery, options: Omit<CallOptions, 'onUnavailable'> = {}): Promise<UsagePage> {
    return usageFrom(await this.send('usage.get', usageBody(query), null, options, true));
  }

  /** Stops following the shard map. Calls in flight still resolve; the NATS connection is the caller's. */
  close(): Promise<void> {
    return this.transport.close();
  }

  /** @internal Sends one call through the dispatcher. */
  send(operation: Operation, item: Record<string, unknown>, routeKey: string | null, options: CallOptions, safe: boolean): Promise<Record<string, unknown>> {
    return this.dispatcher.call({ operation, item, routeKey, timeoutMs: options.timeout ?? this.timeoutMs, safe });
  }
}

export interface Reservation extends Decision {
  /** The hold, when allowed. */
  hold: Hold | null;
}

/** A reservation's hold: settle it with what the work really cost, or release it. Expires by itself at `expiresAt`. */
export class Hold {
  constructor(
    private readonly client: TallyClient,
    readonly userId: string,
    readonly id: string,
    readonly expiresAt: Date,
  ) {}

  /** Turns the hold into the real charge (`actual` for the cost, `amounts` per resource); the difference is refunded or charged. */
  async settle(charge: { actual?: number; amounts?: Record<string, number> }, options: Omit<CallOptions, 'onUnavailable'> = {}): Promise<LimitState[]> {
    const body: Record<string, unknown> = { user_id: this.userId, id: this.id };
    if (charge.actual !== undefined) body.actual = charge.actual;
    if (charge.amounts !== undefined) body.amounts = charge.amounts;
    const answer = await this.client.send('quota.settle', body, this.userId, options, false);
    return limitsFrom(answer.limits);
  }

  /** Gives the held charge back. */
  async release(options: Omit<CallOptions, 'onUnavailable'> = {}): Promise<void> {
    await this.client.send('quota.release', { user_id: this.userId, id: this.id }, this.userId, options, false);
  }
}

/** The answer the call's `onUnavailable` asks for when Tally could not decide; the error again without one. */
function unavailable(error: unknown, onUnavailable: CallOptions['onUnavailable']): Decision {
  const away = error instanceof TimeoutError || error instanceof UnavailableError || error instanceof OwnerUnavailableError;
  if (onUnavailable === undefined || !away) throw error;
  if (onUnavailable === 'allow') return { allowed: true, limits: [], degraded: true };
  return { allowed: false, limits: [], degraded: true, retryAfterMs: (error as OwnerUnavailableError).retryAfterMs ?? 1000 };
}
