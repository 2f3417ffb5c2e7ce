/**
 * The cluster as an outsider reads it: the operator CLI, which takes no part in the cluster,
 * sees its members, the shard map, the coordinator, the operator's requests and the epochs
 * the nodes serve under. It opens buckets and never creates one (a NATS without a cluster
 * stays without one), and it reads them with the code the nodes read them with: the same
 * bucket watch (kv.ts), the same shard-map copy and summary (shardMap.ts), the same decoders
 * of member and operator entries (membership.ts, operator.ts).
 *
 * Two things differ, by necessity: a node ages members on its own clock as its watch sees
 * them change; a reader that looks once has no such clock, so it ages an entry by the
 * server's timestamp of the entry's last renewal. And a reader holds no key secret: it reads
 * entries without checking their MAC (mac.ts), to show them; it acts on none.
 */

import { type KvEntry, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { type Logger, pino } from 'pino';
import { asLeaderRecord } from './coordinator.js';
import { isMissingBucket } from './errors.js';
import { BucketWatch, WATCH_PROBE_MS } from './kv.js';
import { readSealedUnverified } from './mac.js';
import { asMemberRecord, type MemberRecord } from './membership.js';
import { applyOperatorEntry, type OperatorRequestSet, statusWithDrain } from './operator.js';
import { COORDINATOR_BUCKET, EPOCHS_SUBJECT, LEADER_KEY, MEMBERS_BUCKET, OPERATOR_BUCKET, SHARDS_BUCKET } from './protocol.js';
import { ShardMapView } from './shardMap.js';

/** How long a reader waits for a watch to deliver what its bucket held; past it, it goes on with what came. */
const LOAD_TIMEOUT_MS = 10_000;
/** How long the nodes have to answer for their epochs. */
const EPOCHS_WAIT_MS = 1000;

/** The NATS reached holds no Tally cluster: one of its buckets does not exist. */
export class ClusterNotFoundError extends Error {
  constructor(
    readonly bucket: string,
    options: { cause: unknown },
  ) {
    super(`no Tally cluster on this NATS (its bucket ${bucket} does not exist)`, options);
    this.name = 'ClusterNotFoundError';
  }
}

/** A member as a reader sees it. */
export interface MemberReading {
  record: MemberRecord;
  /** The record's status, or `drained` for an active node an operator drained. */
  status: string;
  /** Since the server stored the entry's last renewal. */
  leaseAgeMs: number;
  /** Renewed within its lease. */
  live: boolean;
}

export interface ClusterReaderOptions {
  /** The lease of a member whose entry does not say its own (written by an older node). */
  defaultLeaseMs: number;
}

/**
 * The cluster as it was when opened (members, coordinator, operator requests), and the shard
 * map as it is now: that one watch runs until `close`, for commands that wait for moves.
 */
export class ClusterReader {
  private constructor(
    /** Every member entry, live or not, by id. */
    readonly members: readonly MemberReading[],
    /** The coordinator's node, if one holds the lead. */
    readonly leader: string | null,
    readonly requests: OperatorRequestSet,
    readonly map: ShardMapView,
  ) {}

  static async open(nc: NatsConnection, options: ClusterReaderOptions): Promise<ClusterReader> {
    const kvm = new Kvm(nc);
    const following = followShardMap(kvm);
    const [members, map, requests, leader] = await Promise.all([readBucket(kvm, MEMBERS_BUCKET), following, readOperatorRequests(kvm), readLeader(kvm)]).catch(
      (error: unknown) => {
        // Another read failed, but the map's watch may have started: stop it. (Had the map failed, that is the error thrown.)
        // The other read's error is the one to report; the map's own failure adds nothing to it.
        following.then((started) => started.close()).catch(() => undefined);
        throw error;
      },
    );
    const readings = [...members.values()]
      .flatMap((entry) => readMember(entry, requests, options.defaultLeaseMs) ?? [])
      .sort((a, b) => (a.record.id < b.record.id ? -1 : 1));
    return new ClusterReader(readings, leader, requests, map);
  }

  /** The members renewed within their lease. */
  live(): MemberReading[] {
    return this.members.filter((member) => member.live);
  }

  close(): void {
    this.map.close();
  }
}

/**
 * The epochs the nodes serve their shards under (they live in the nodes, and the fence in
 * Postgres): every node answers for the shards it serves. Waits for `nodes` answers at most.
 */
export async function readEpochs(nc: NatsConnection, nodes: number): Promise<Map<number, number>> {
  const epochs = new Map<number, number>();
  const replies = await nc.requestMany(EPOCHS_SUBJECT, '', { maxWait: EPOCHS_WAIT_MS, maxMessages: nodes });
  for await (const reply of replies) {
    let answer: unknown;
    try {
      answer = reply.json();
    } catch {
      continue; // not a node's answer
    }
    const pairs = (answer as { epochs?: unknown })?.epochs;
    if (!Array.isArray(pairs)) continue;
    for (const pair of pairs) if (Array.isArray(pair) && Number.isInteger(pair[0]) && Number.isInteger(pair[1])) epochs.set(pair[0], pair[1]);
  }
  return epochs;
}

/** The watch of a reader says nothing: what it reads is the CLI's answer, a watch made anew is not. */
const silent: Logger = pino({ level: 'silent' });

/** Opening a bucket does not look at it: the first read finds out whether it exists. */
function missingAs<T>(bucket: string, read: Promise<T>): Promise<T> {
  return read.catch((error: unknown) => {
    if (isMissingBucket(error)) throw new ClusterNotFoundError(bucket, { cause: error });
    throw error;
  });
}

/** Waits until a watch has delivered what its bucket held, LOAD_TIMEOUT_MS at most. */
async function untilLoaded(loaded: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, LOAD_TIMEOUT_MS);
  });
  await Promise.race([loaded, timeout]);
  clearTimeout(timer);
}

/** Every entry a bucket holds now, by key (deleted keys left out), through one watch stopped once loaded. */
async function readBucket(kvm: Kvm, name: string): Promise<Map<string, KvEntry>> {
  const entries = new Map<string, KvEntry>();
  const onEntry = (entry: KvEntry) => {
    if (entry.operation === 'PUT') entries.set(entry.key, entry);
    else entries.delete(entry.key);
  };
  const watch = await missingAs(name, BucketWatch.start(await kvm.open(name), onEntry, { name, log: silent, probeMs: WATCH_PROBE_MS }));
  try {
    await untilLoaded(watch.loaded);
  } finally {
    watch.stop();
  }
  return entries;
}

async function followShardMap(kvm: Kvm): Promise<ShardMapView> {
  const map = await missingAs(SHARDS_BUCKET, ShardMapView.follow(await kvm.open(SHARDS_BUCKET), silent, readSealedUnverified));
  await untilLoaded(map.loaded);
  return map;
}

/** The operator bucket is created by the first node or the first request: absent, nothing was asked. */
async function readOperatorRequests(kvm: Kvm): Promise<OperatorRequestSet> {
  const requests: OperatorRequestSet = { drained: new Set(), pins: new Map() };
  let entries: Map<string, KvEntry>;
  try {
    entries = await readBucket(kvm, OPERATOR_BUCKET);
  } catch (error) {
    if (error instanceof ClusterNotFoundError) return requests;
    throw error;
  }
  for (const entry of entries.values()) applyOperatorEntry(requests, entry, readSealedUnverified);
  return requests;
}

/** A leader entry that cannot be read shows as no leader: whether the cluster is there, the other reads say. */
async function readLeader(kvm: Kvm): Promise<string | null> {
  const entry = await (await kvm.open(COORDINATOR_BUCKET)).get(LEADER_KEY).catch(() => null);
  return entry?.operation === 'PUT' ? (asLeaderRecord(readSealedUnverified(entry))?.node ?? null) : null;
}

/** Null for an entry that is not a member record (not ours to read). */
function readMember(entry: KvEntry, requests: OperatorRequestSet, defaultLeaseMs: number): MemberReading | null {
  const record = asMemberRecord(readSealedUnverified(entry));
  if (record === null) return null;
  const leaseAgeMs = Math.max(0, Date.now() - entry.created.getTime());
  return { record, status: statusWithDrain(record, requests), leaseAgeMs, live: leaseAgeMs < (record.lease_ms ?? defaultLeaseMs) };
}
