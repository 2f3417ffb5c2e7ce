/**
 * What operators ask of the cluster, through the `tally cluster` CLI: bucket
 * `tally_operator`, key `drain.<node>` (value `{at}`) for as long as a node is to hold no
 * shards. Every coordinator watches the bucket and leaves drained nodes out of placement,
 * so their shards move off by planned hand-offs and none come back until the key is
 * deleted (`undrain`). A drained node keeps answering: it forwards what it receives.
 * Key `pin.<shard>` (value `{to}`): an operator's move; placement keeps the shard on that
 * node while it takes shards, until a rebalance deletes the pins.
 *
 * Entries are sealed (mac.ts), so the CLI, which holds no key secret, does not write them:
 * it asks a node on OPERATOR_REQUESTS_SUBJECT, and the node writes them (`answer`). A put
 * that is not sealed counts as no request at all.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { SHARD_COUNT } from '../../shards/index.js';
import { BucketWatch, openBucket, WATCH_PROBE_MS } from './kv.js';
import type { ClusterMac } from './mac.js';
import type { MemberRecord } from './membership.js';
import { ALL_PINS, drainedNode, drainKey, OPERATOR_BUCKET, pinKey, pinnedShard } from './protocol.js';
import type { EntryReader } from './shardMap.js';

/** What operators have asked for, as read from the bucket. */
export interface OperatorRequestSet {
  /** Nodes an operator has drained. */
  readonly drained: Set<string>;
  /** Shards an operator moved, and where: placement keeps them there. */
  readonly pins: Map<number, string>;
}

/**
 * Applies one entry of the operator bucket (a put or a delete) to `requests`, each put read
 * with `read` (a put that does not read as a request a node wrote counts as a delete: it
 * replaced whatever request was there). True when the requests changed: any pin entry, a
 * drain only when it drains or undrains a node.
 */
export function applyOperatorEntry(requests: OperatorRequestSet, entry: KvEntry, read: EntryReader): boolean {
  const value = entry.operation === 'PUT' ? read(entry) : null;
  const shard = pinnedShard(entry.key);
  if (shard !== null) {
    const to = typeof value === 'object' && value !== null ? (value as { to?: unknown }).to : undefined;
    if (typeof to === 'string') requests.pins.set(shard, to);
    else requests.pins.delete(shard);
    return true;
  }
  const node = drainedNode(entry.key);
  if (node === null) return false;
  const had = requests.drained.has(node);
  if (typeof value === 'object' && value !== null) requests.drained.add(node);
  else requests.drained.delete(node);
  return had !== requests.drained.has(node);
}

/** A member's status as operators see it: an active node they drained shows as `drained`. */
export function statusWithDrain(record: MemberRecord, requests: OperatorRequestSet): string {
  return record.status === 'active' && requests.drained.has(record.id) ? 'drained' : record.status;
}

/** What the CLI may ask a node to write. */
export type OperatorRequest = { op: 'drain' | 'undrain'; node: string } | { op: 'pin'; shard: number; to: string } | { op: 'unpin-all' };

export type OperatorAnswer = { ok: true; removed?: number } | { error: string };

/** Node ids as the configuration allows them. */
const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_REQUEST_BYTES = 1024;

/** An operator request as it arrived, checked; null for anything else. */
function readOperatorRequest(data: Uint8Array): OperatorRequest | null {
  if (data.length > MAX_REQUEST_BYTES) return null;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { op, node, shard, to } = value as Record<string, unknown>;
  const nodeId = (id: unknown): id is string => typeof id === 'string' && NODE_ID.test(id);
  if ((op === 'drain' || op === 'undrain') && nodeId(node)) return { op, node };
  if (op === 'pin' && Number.isInteger(shard) && (shard as number) >= 0 && (shard as number) < SHARD_COUNT && nodeId(to))
    return { op, shard: shard as number, to };
  if (op === 'unpin-all') return { op };
  return null;
}

export class OperatorRequests implements OperatorRequestSet {
  /** Nodes an operator has drained. */
  readonly drained = new Set<string>();
  /** Shards an operator moved, and where: placement keeps them there. */
  readonly pins = new Map<number, string>();
  /** Called when the set changes. */
  onChange: () => void = () => {};
  private watcher: BucketWatch | null = null;

  private constructor(
    readonly kv: KV,
    private readonly mac: ClusterMac,
  ) {}

  static async open(nc: NatsConnection, log: Logger, mac: ClusterMac): Promise<OperatorRequests> {
    const requests = new OperatorRequests(await openBucket(nc, OPERATOR_BUCKET, { log }), mac);
    requests.watcher = await BucketWatch.start(requests.kv, (entry) => requests.observe(entry), { name: OPERATOR_BUCKET, log, probeMs: WATCH_PROBE_MS });
    return requests;
  }

  close(): void {
    this.watcher?.stop();
  }

  /**
   * Carries out one request of the CLI (OPERATOR_REQUESTS_SUBJECT), read as a stranger's:
   * the answer, `{ok: true}` or `{error}`, never a throw. Whether the node or shard named
   * makes sense in this cluster, the CLI has checked; this checks the request's shape.
   */
  async answer(data: Uint8Array): Promise<OperatorAnswer> {
    const request = readOperatorRequest(data);
    if (request === null) return { error: 'not an operator request: expected {op: drain|undrain, node} or {op: pin, shard, to} or {op: unpin-all}' };
    try {
      const at = new Date().toISOString();
      switch (request.op) {
        case 'drain':
          await this.kv.put(drainKey(request.node), this.mac.sealEntry(OPERATOR_BUCKET, drainKey(request.node), { at }));
          return { ok: true };
        case 'undrain':
          await this.kv.delete(drainKey(request.node));
          return { ok: true };
        case 'pin':
          await this.kv.put(pinKey(request.shard), this.mac.sealEntry(OPERATOR_BUCKET, pinKey(request.shard), { to: request.to, at }));
          return { ok: true };
        case 'unpin-all': {
          const pins: string[] = [];
          for await (const key of await this.kv.keys(ALL_PINS)) pins.push(key);
          for (const key of pins) await this.kv.delete(key);
          return { ok: true, removed: pins.length };
        }
      }
    } catch (error) {
      return { error: `the request could not be written: ${(error as Error)?.message ?? String(error)}` };
    }
  }

  private observe(entry: KvEntry): void {
    if (applyOperatorEntry(this, entry, (put) => this.mac.openEntry('operator', OPERATOR_BUCKET, put))) this.onChange();
  }
}
