/**
 * The shard map in a NATS JetStream KV bucket (`tally_shards`): one entry per shard, key
 * `shard.<n>`, value JSON `{owner, status, to?, gen}`, sealed (mac.ts). Every change is a compare-and-set on the
 * entry's revision, so two writers (a coordinator and an owner handing a shard off, or two
 * nodes that both think they lead) can never both win.
 *
 * - `{owner: A, status: 'owned'}`: A serves the shard.
 * - `{owner: A, status: 'moving', to: B}` (written by the coordinator): A stops admitting
 *   for the shard, finishes what is in flight, flushes it, and hands it over by writing
 *   `{owner: B, status: 'owned'}`. B then bumps the shard's epoch in the fence and serves.
 *
 * Every node watches the whole bucket and keeps its own copy (`ShardMapView`): routing reads
 * that copy, and a request that reaches a node which no longer owns its shard is answered
 * `moved`. The operator CLI keeps the same copy, read-only; `ShardMap` adds the writes.
 */
import type { KV, KvEntry, RoKV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { SHARD_COUNT } from '../../shards/index.js';
import { isRevisionConflict } from './errors.js';
import { BucketWatch, openBucket, WATCH_PROBE_MS } from './kv.js';
import type { ClusterMac } from './mac.js';
import { keyedShard, SHARDS_BUCKET, shardKey } from './protocol.js';

export interface ShardEntry {
  owner: string;
  status: 'owned' | 'moving';
  /** With `moving`: where the shard goes. */
  to?: string;
  /**
   * One more than the entry it replaced (absent: 0, an entry of an older build). A sealed
   * entry whose generation does not move on is an old one put back, and is ignored.
   */
  gen?: number;
}

export interface MapEntry {
  entry: ShardEntry;
  revision: number;
}

/** How a reader turns a put entry into its record: verified by a node, unverified by the CLI. */
export type EntryReader = (entry: KvEntry) => unknown;

/** A map entry's record, checked for its fields; null for anything else. */
function asShardEntry(value: unknown): ShardEntry | null {
  if (typeof value !== 'object' || value === null) return null;
  const { owner, status, to, gen } = value as Record<string, unknown>;
  if (typeof owner !== 'string' || (gen !== undefined && !Number.isSafeInteger(gen))) return null;
  if (status === 'owned') return to === undefined ? (value as ShardEntry) : null;
  return status === 'moving' && typeof to === 'string' ? (value as ShardEntry) : null;
}

function shardOfKey(key: string): number | null {
  const shard = keyedShard(key);
  return shard !== null && shard >= 0 && shard < SHARD_COUNT ? shard : null;
}

/** The map counted: what the admin view, the health check and the CLI show. */
export interface ShardSummary {
  /** Shards per owner. */
  byNode: Record<string, number>;
  /** Planned moves under way, by shard. */
  moves: { shard: number; from: string; to: string }[];
  /** How many are moving (`moves.length`). */
  moving: number;
  /** Shards without an owner. */
  unassigned: number;
}

/** The shard map as one watch keeps it: read-only, and up to date while the watch runs. */
export class ShardMapView {
  protected readonly entries = new Map<number, MapEntry>();
  /** The revision of shards whose entry in the bucket is not one a node wrote (and no node's came before it). */
  private readonly foreign = new Map<number, number>();
  private watcher: BucketWatch | null = null;
  private resolveLoaded!: () => void;
  /** Resolves once the watch has delivered every entry stored when it started. */
  readonly loaded = new Promise<void>((resolve) => {
    this.resolveLoaded = resolve;
  });
  /** Called for every change of an entry (null: deleted), after the copy is updated. */
  onChange: (shard: number, now: ShardEntry | null, before: ShardEntry | null) => void = () => {};

  protected constructor(
    protected readonly log: Logger,
    private readonly read: EntryReader,
  ) {}

  /**
   * Follows a shard-map bucket opened by the caller (the CLI opens it without creating it),
   * reading each value with `read` (the CLI, without the key secret, reads them unverified).
   */
  static async follow(kv: RoKV, log: Logger, read: EntryReader): Promise<ShardMapView> {
    const view = new ShardMapView(log, read);
    await view.watch(kv);
    return view;
  }

  get(shard: number): MapEntry | undefined {
    return this.entries.get(shard);
  }

  /** The revision a compare-and-set on `shard`'s entry must name (0: no entry). */
  revisionOf(shard: number): number {
    return this.entries.get(shard)?.revision ?? this.foreign.get(shard) ?? 0;
  }

  /** The node that serves `shard` now, if any (while moving: the old owner, until it hands off). */
  owner(shard: number): string | undefined {
    return this.entries.get(shard)?.entry.owner;
  }

  /** Shard → owner, for placement. */
  owners(): Map<number, string> {
    const owners = new Map<number, string>();
    for (const [shard, { entry }] of this.entries) owners.set(shard, entry.owner);
    return owners;
  }

  /**
   * Shards per owner, and the moves under way. Given the live nodes, a shard whose owner is
   * not among them counts as unassigned (it has no one to serve it until it is claimed).
   */
  summary(live?: ReadonlySet<string>): ShardSummary {
    const byNode: Record<string, number> = {};
    const moves: ShardSummary['moves'] = [];
    let unassigned = 0;
    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      const entry = this.entries.get(shard)?.entry;
      if (entry === undefined || (live !== undefined && !live.has(entry.owner))) {
        unassigned++;
        continue;
      }
      byNode[entry.owner] = (byNode[entry.owner] ?? 0) + 1;
      if (entry.status === 'moving') moves.push({ shard, from: entry.owner, to: entry.to! });
    }
    return { byNode, moves, moving: moves.length, unassigned };
  }

  close(): void {
    this.watcher?.stop();
  }

  protected async watch(kv: RoKV): Promise<void> {
    this.watcher = await BucketWatch.start(kv, (entry) => this.observe(entry), { name: SHARDS_BUCKET, log: this.log, probeMs: WATCH_PROBE_MS });
    void this.watcher.loaded.then(this.resolveLoaded);
  }

  private observe(kvEntry: KvEntry): void {
    const shard = shardOfKey(kvEntry.key);
    if (shard === null) return;
    const before = this.entries.get(shard);
    if (kvEntry.revision <= this.revisionOf(shard)) return;
    // No node deletes a map entry, and a put must be sealed by a node and newer than the entry
    // it replaces. Anything else (a delete, a forgery, an old entry put back) changes nothing:
    // the shard keeps what it had, under the new revision, so that the next write by a node
    // (a compare-and-set) replaces it.
    const entry = kvEntry.operation === 'PUT' ? asShardEntry(this.read(kvEntry)) : null;
    if (entry === null || (before !== undefined && (entry.gen ?? 0) <= (before.entry.gen ?? 0))) {
      if (before !== undefined) this.entries.set(shard, { entry: before.entry, revision: kvEntry.revision });
      else this.foreign.set(shard, kvEntry.revision);
      return;
    }
    this.foreign.delete(shard);
    this.entries.set(shard, { entry, revision: kvEntry.revision });
    this.onChange(shard, entry, before?.entry ?? null);
  }
}

/** The shard map a node writes: the coordinator plans and cancels moves, an owner hands off. */
export class ShardMap extends ShardMapView {
  private constructor(
    private readonly kv: KV,
    log: Logger,
    private readonly mac: ClusterMac,
  ) {
    super(log, (entry) => mac.openEntry('shards', SHARDS_BUCKET, entry));
  }

  static async open(nc: NatsConnection, log: Logger, mac: ClusterMac): Promise<ShardMap> {
    const kv = await openBucket(nc, SHARDS_BUCKET, { log });
    const map = new ShardMap(kv, log, mac);
    await map.watch(kv);
    return map;
  }

  /** Gives `shard` to `to` outright (it has no live owner). False when the entry moved on since `revision` (0: absent). */
  assign(shard: number, to: string, revision: number): Promise<boolean> {
    return this.write(shard, { owner: to, status: 'owned' }, revision);
  }

  /** Marks a planned move of `shard` from its owner to `to`. */
  startMove(shard: number, from: string, to: string, revision: number): Promise<boolean> {
    return this.write(shard, { owner: from, status: 'moving', to }, revision);
  }

  /** Ends a move that cannot finish (its destination went away): the owner keeps the shard. */
  cancelMove(shard: number, owner: string, revision: number): Promise<boolean> {
    return this.write(shard, { owner, status: 'owned' }, revision);
  }

  /** Hands `shard` over to `to`: called by the old owner once it has flushed the shard. */
  handOff(shard: number, to: string, revision: number): Promise<boolean> {
    return this.write(shard, { owner: to, status: 'owned' }, revision);
  }

  private async write(shard: number, entry: ShardEntry, revision: number): Promise<boolean> {
    const value = this.mac.sealEntry(SHARDS_BUCKET, shardKey(shard), { ...entry, gen: (this.entries.get(shard)?.entry.gen ?? 0) + 1 });
    try {
      if (revision === 0) await this.kv.create(shardKey(shard), value);
      else await this.kv.update(shardKey(shard), value, revision);
      return true;
    } catch (error) {
      if (isRevisionConflict(error)) this.log.debug({ shard, err: error }, 'shard map write lost its compare-and-set');
      else this.log.warn({ shard, err: error }, 'shard map write failed; the next round tries again');
      return false;
    }
  }
}
