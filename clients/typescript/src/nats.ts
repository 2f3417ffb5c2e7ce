/**
 * The NATS transport: requests on Tally's NATS API (`tally.v1.<operation>`, any node of the
 * queue group), or on a node's own subjects (`tally.v1.node.<id>.<operation>`) when the
 * client routes to owners. Bodies are MessagePack both ways.
 *
 * Routing needs the shard map: fetched at connect, fetched again when a node says it changed
 * (`tally.events.map`), when a node answers `moved`, and every REFRESH_MS in any case, so a
 * lost notice costs at most that long of `moved` answers. Without a map (a server that has
 * none to give, or `routing: 'any'`) every request goes through the queue group.
 */
import { type NatsConnection, TimeoutError as NatsTimeoutError, NoRespondersError, headers as natsHeaders, type Subscription } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { errorFromProblem, isProblem, TimeoutError, UnavailableError } from './errors.js';
import { ShardMap, type WireShardMap } from './shardMap.js';
import type { Operation, Transport } from './transport.js';

export interface NatsOptions {
  /**
   * `'owner'` (the default): each batch goes straight to the node that owns its users, by the
   * shard map. `'any'`: every request goes to any node, which forwards what it does not own.
   */
  routing?: 'owner' | 'any';
}

const API_PREFIX = 'tally.v1.';
const MAP_CHANGED_SUBJECT = 'tally.events.map';
const MAP_TIMEOUT_MS = 2000;
const REFRESH_MS = 30_000;
const packr = new Packr({ useRecords: false, moreTypes: false });

export class NatsTransport implements Transport {
  readonly maxItems = 1000;
  map: ShardMap | null = null;
  private notices: Subscription | null = null;
  private refresher: NodeJS.Timeout | null = null;
  private readonly headers = natsHeaders();

  private constructor(private readonly nc: NatsConnection) {
    this.headers.set('content-type', 'application/msgpack');
  }

  static async connect(nc: NatsConnection, options: NatsOptions = {}): Promise<NatsTransport> {
    const transport = new NatsTransport(nc);
    if (options.routing !== 'any') await transport.followMap();
    return transport;
  }

  async request(operation: Operation | 'cluster.map', body: unknown, timeoutMs: number, node?: string): Promise<unknown> {
    const subject = node !== undefined && this.map !== null ? `${this.map.directPrefix}${node}.${operation}` : `${API_PREFIX}${operation}`;
    let reply: Awaited<ReturnType<NatsConnection['request']>>;
    try {
      reply = await this.nc.request(subject, packr.pack(body), { timeout: Math.max(1, Math.ceil(timeoutMs)), headers: this.headers });
    } catch (error) {
      throw requestFailure(error, timeoutMs);
    }
    let answer: unknown;
    try {
      answer = reply.data.length === 0 ? {} : packr.unpack(reply.data);
    } catch (error) {
      throw new UnavailableError('unreadable', 0, 'Tally’s answer could not be read', { cause: error });
    }
    // A service error: the status is in the header, the problem in the body.
    if (reply.headers?.get('Nats-Service-Error-Code')) {
      if (isProblem(answer)) throw errorFromProblem(answer);
      throw new UnavailableError(
        'unreadable',
        Number(reply.headers.get('Nats-Service-Error-Code')) || 0,
        reply.headers.get('Nats-Service-Error') || 'Tally failed',
      );
    }
    return answer;
  }

  async close(): Promise<void> {
    this.notices?.unsubscribe();
    if (this.refresher !== null) clearInterval(this.refresher);
  }

  private async followMap(): Promise<void> {
    const fetchMap = () => this.request('cluster.map', {}, MAP_TIMEOUT_MS) as Promise<WireShardMap>;
    try {
      this.map = await ShardMap.load(fetchMap);
    } catch {
      // No map to be had (a server without one, or none answering yet): any node routes.
      return;
    }
    const map = this.map;
    this.notices = this.nc.subscribe(MAP_CHANGED_SUBJECT, { callback: () => void map.refresh() });
    this.refresher = setInterval(() => void map.refresh(), REFRESH_MS);
    this.refresher.unref();
  }
}

/** nats.js's failure of a request as the client's error: a timeout may have been carried out, no responders was not. */
function requestFailure(error: unknown, timeoutMs: number): Error {
  const cause = (error as { cause?: unknown })?.cause;
  if (error instanceof NoRespondersError || cause instanceof NoRespondersError) {
    return new UnavailableError('unavailable', 0, 'no node of Tally is listening', { cause: error });
  }
  if (error instanceof NatsTimeoutError || cause instanceof NatsTimeoutError) {
    return new TimeoutError('timeout', 0, `Tally did not answer within ${Math.round(timeoutMs)} ms`, { cause: error });
  }
  return new UnavailableError('unavailable', 0, `the request could not be sent: ${(error as Error)?.message ?? error}`, { cause: error });
}
