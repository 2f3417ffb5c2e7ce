/**
 * What operators ask of the cluster, through the `tally cluster` CLI: bucket
 * `tally_operator`, key `drain.<node>` (value `{at}`) for as long as a node is to hold no
 * shards. Every coordinator watches the bucket and leaves drained nodes out of placement,
 * so their shards move off by planned hand-offs and none come back until the key is
 * deleted (`undrain`). A drained node keeps answering: it forwards what it receives.
 * Key `pin.<shard>` (value `{to}`): an operator's move; placement keeps the shard on that
 * node while it takes shards, until a rebalance deletes the pins.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { BucketWatch, openBucket, WATCH_PROBE_MS } from './kv.js';
import type { MemberRecord } from './membership.js';
import { drainedNode, OPERATOR_BUCKET, pinnedShard } from './protocol.js';

/** What operators have asked for, as read from the bucket. */
export interface OperatorRequestSet {
  /** Nodes an operator has drained. */
  readonly drained: Set<string>;
  /** Shards an operator moved, and where: placement keeps them there. */
  readonly pins: Map<number, string>;
}

/**
 * Applies one entry of the operator bucket (a put or a delete) to `requests`. True when the
 * requests changed: any pin entry, a drain only when it drains or undrains a node.
 */
export function applyOperatorEntry(requests: OperatorRequestSet, entry: KvEntry): boolean {
  const shard = pinnedShard(entry.key);
  if (shard !== null) {
    if (entry.operation === 'PUT') requests.pins.set(shard, entry.json<{ to: string }>().to);
    else requests.pins.delete(shard);
    return true;
  }
  const node = drainedNode(entry.key);
  if (node === null) return false;
  const had = requests.drained.has(node);
  if (entry.operation === 'PUT') requests.drained.add(node);
  else requests.drained.delete(node);
  return had !== requests.drained.has(node);
}

/** A member's status as operators see it: an active node they drained shows as `drained`. */
export function statusWithDrain(record: MemberRecord, requests: OperatorRequestSet): string {
  return record.status === 'active' && requests.drained.has(record.id) ? 'drained' : record.status;
}

export class OperatorRequests implements OperatorRequestSet {
  /** Nodes an operator has drained. */
  readonly drained = new Set<string>();
  /** Shards an operator moved, and where: placement keeps them there. */
  readonly pins = new Map<number, string>();
  /** Called when the set changes. */
  onChange: () => void = () => {};
  private watcher: BucketWatch | null = null;

  private constructor(readonly kv: KV) {}

  static async open(nc: NatsConnection, log: Logger): Promise<OperatorRequests> {
    const requests = new OperatorRequests(await openBucket(nc, OPERATOR_BUCKET, { log }));
    requests.watcher = await BucketWatch.start(requests.kv, (entry) => requests.observe(entry), { name: OPERATOR_BUCKET, log, probeMs: WATCH_PROBE_MS });
    return requests;
  }

  close(): void {
    this.watcher?.stop();
  }

  private observe(entry: KvEntry): void {
    if (applyOperatorEntry(this, entry)) this.onChange();
  }
}
