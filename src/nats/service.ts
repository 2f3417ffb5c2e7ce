/**
 * The internal NATS API: the NATS service `tally` (@nats-io/services, so `$SRV.PING|INFO|STATS`
 * find it), run by every node in one queue group. A request reaches any node, names its user
 * by `user_id`, and goes through the same router as an HTTP request: to the owner, with
 * every guarantee of a local request. What each operation reads, decides and answers is
 * src/api's `serviceOperations` (HTTP serves the same on `/v1/service/…`); this file is its
 * NATS transport: the encodings, service errors, the count of requests in flight, and the
 * subjects a client that routes to owners uses.
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
 *   refused. A consume may name its caller by API key instead (`api_key`), checked as HTTP
 *   checks it. Who may send here is NATS's business (subject permissions), as with the node
 *   subjects.
 * - For a client that routes to owners (@tally/client): `cluster.map` answers the shard map,
 *   every node says on `tally.events.map` that it changed, and each node also listens on
 *   subjects of its own (`tally.v1.node.<id>.<operation>`, no queue group). There it decides
 *   only the items whose user it owns and answers `{moved: true}` for the others, so an item
 *   sent to its owner is never forwarded, and one sent to a node that no longer owns it comes
 *   back to be sent again.
 */

import { isUtf8 } from 'node:buffer';
import { type Service, type ServiceMsg, Svcm } from '@nats-io/services';
import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import type { Logger } from 'pino';
import {
  type ApiKeyCallers,
  HttpError,
  itemError,
  type Router,
  type SessionTokenVerifier,
  serviceOperations,
  serviceProblem,
  type UsageReader,
} from '../api/index.js';
import { type LimiterDecision, type LimiterRequest, LimiterService, TallyError, type UserOpName, type UserOps, type UserRequest } from '../shards/index.js';

/** The service's name, its queue group (every node answers in one), and the prefix of its subjects. */
const SERVICE_NAME = 'tally';
const QUEUE_GROUP = 'tally';
const SUBJECT_PREFIX = 'tally.v1';
const MSGPACK = 'application/msgpack';
/** A node's own subjects, `tally.v1.node.<id>.<operation>`: the operations a client sends to an owner. */
const DIRECT_GROUP = 'node';
const DIRECT_OPERATIONS = new Set(['quota.consume', 'quota.get', 'quota.reserve', 'quota.settle', 'quota.release', 'limiter.check']);
/** Where every node says that the shard map changed. It carries nothing to trust: a client asks `cluster.map` again. */
const MAP_CHANGED_SUBJECT = 'tally.events.map';
/** Changes within this long (a move touches many shards) are said once. */
const MAP_NOTICE_MS = 50;
/** The answer for an item a node's own subject got for a user it does not own. */
const MOVED_ANSWER = Object.freeze({ moved: true });

const packr = new Packr({ useRecords: false, moreTypes: false });

export interface NatsApiDeps {
  router: Router;
  tokens: SessionTokenVerifier;
  /** The usage history (the node's store), for `usage.get`. */
  usage: UsageReader;
  clock: () => number;
  log: Logger;
  version: string;
  nodeId: string;
  /** Decisions in flight at once (a batch counts each item); a request past it is answered 503. */
  maxInFlight: number;
  /** API keys, for a consume that names its caller by key. */
  keys: ApiKeyCallers;
  /** The shard map as this node sees it: each shard's owner, if it has one. */
  shardOwners(): readonly (string | undefined)[];
}

/** One endpoint: its subject's last part and what it does with a decoded body. */
interface Operation {
  name: string;
  handle(body: unknown): unknown;
}

export class NatsApi {
  private inFlight = 0;
  private idle: (() => void) | null = null;
  private mapNotice: NodeJS.Timeout | null = null;

  private constructor(
    private readonly nc: NatsConnection,
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
    const api = new NatsApi(nc, service, deps.log, deps.maxInFlight);
    const group = service.addGroup(SUBJECT_PREFIX);
    const endpoint = (name: string, subject: string, operation: Operation) =>
      group.addEndpoint(name.replaceAll('.', '_'), { subject, handler: (_error, msg) => api.answer(operation, msg) });
    for (const operation of serviceOperations(deps)) endpoint(operation.name, operation.name, operation);
    const direct = serviceOperations({ ...deps, router: ownersOnly(deps.router), failedItem: movedOrError });
    for (const operation of direct) {
      if (DIRECT_OPERATIONS.has(operation.name)) endpoint(`direct.${operation.name}`, `${DIRECT_GROUP}.${deps.nodeId}.${operation.name}`, operation);
    }
    endpoint('cluster.map', 'cluster.map', { name: 'cluster.map', handle: () => shardMapView(deps.shardOwners()) });
    return api;
  }

  /** The shard map changed: said on MAP_CHANGED_SUBJECT once the changes of the next moment are in. */
  mapChanged(): void {
    if (this.mapNotice !== null) return;
    this.mapNotice = setTimeout(() => {
      this.mapNotice = null;
      try {
        this.nc.publish(MAP_CHANGED_SUBJECT, '{}');
      } catch (error) {
        this.log.debug({ err: error }, 'NATS API: the shard map notice was not published (the connection is closing)');
      }
    }, MAP_NOTICE_MS);
  }

  /** Stops taking requests, then waits (at most `timeoutMs`) for those being answered. */
  async stop(timeoutMs: number): Promise<void> {
    if (this.mapNotice !== null) clearTimeout(this.mapNotice);
    this.mapNotice = null;
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
    if (error === NOT_HERE) {
      reply(msg, MOVED_ANSWER, msgpack);
      return;
    }
    const { problem: body, unexpected } = serviceProblem(error);
    if (unexpected) this.log.error({ err: error, subject: msg.subject }, 'NATS API: request failed');
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

/** Thrown by `ownersOnly` for a user this node does not own; answered MOVED_ANSWER. Made once: it carries nothing. */
const NOT_HERE = new Error('not the owner');

/**
 * The router of a node's own subjects: a request for an entity this node owns goes on as
 * usual, any other fails with NOT_HERE instead of being forwarded (its sender routes it).
 */
function ownersOnly(router: Router): Router {
  return {
    user<K extends UserOpName>(request: UserRequest<K>): Promise<UserOps[K]['result']> {
      return router.owns(request.userId) ? router.user(request) : Promise.reject(NOT_HERE);
    },
    // The router answers synchronously only for a user this node owns: no second hash of the id.
    tryUser: (request) => router.tryUser(request),
    limiter(request: LimiterRequest): Promise<LimiterDecision> {
      return router.owns(LimiterService.entityKey(request.namespace, request.key)) ? router.limiter(request) : Promise.reject(NOT_HERE);
    },
    owns: (entityKey) => router.owns(entityKey),
  };
}

/**
 * The shard map as a client routes by it: `shard = xxh64(key, seed 0) mod shard_count` of the
 * user id (or of `limiter_prefix` + a limiter's key), and `owners[shard]` indexes `nodes`
 * (-1: no owner now). A node's own subjects begin with `direct_prefix` + its id.
 */
function shardMapView(owners: readonly (string | undefined)[]) {
  const nodes: string[] = [];
  const indexOf = new Map<string, number>();
  const list = owners.map((owner) => {
    if (owner === undefined) return -1;
    let index = indexOf.get(owner);
    if (index === undefined) {
      index = nodes.length;
      nodes.push(owner);
      indexOf.set(owner, index);
    }
    return index;
  });
  return {
    shard_count: owners.length,
    hash: 'xxh64',
    limiter_prefix: LimiterService.entityKey('service', ''),
    direct_prefix: `${SUBJECT_PREFIX}.${DIRECT_GROUP}.`,
    nodes,
    owners: list,
  };
}

/** An item of a batch on a node's own subject: MOVED_ANSWER for a user this node does not own. */
function movedOrError(error: unknown): unknown {
  return error === NOT_HERE ? MOVED_ANSWER : itemError(error);
}

function decodeBody(data: Uint8Array, msgpack: boolean): unknown {
  if (data.length === 0) return {};
  // As over HTTP: invalid UTF-8 is refused, not replaced (a replaced byte would change what was asked).
  if (!msgpack && !isUtf8(data)) throw new HttpError('malformed_json', 'the request body is not valid UTF-8');
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
