/**
 * The coordinator: the one node that writes the shard map. It holds the `leader` entry of
 * the `tally_coordinator` bucket, taken and renewed by compare-and-set. Every node runs a
 * Coordinator, and all but one of them only watch.
 *
 * - Taking the lead: a node creates the entry when it is absent. When the entry has not
 *   changed for a whole lease (as this node sees it, on its monotonic clock), the leader is
 *   gone, and the node takes the entry over by CAS on the revision it saw.
 * - Leading: each round renews the entry (CAS) and then, but only while this node's own
 *   membership lease is valid, plans the map (placement.ts) from the live members and
 *   writes it: every shard without a live owner is assigned at once; planned moves start a
 *   few at a time, with at most `maxMoves` in flight; a move whose destination has gone is
 *   cancelled (the owner keeps the shard). Nodes an operator drained (operator.ts) take
 *   no shards.
 * - Losing the lead: a renewal refused (another node took the entry over while this one was
 *   frozen or cut off) stops this node writing the map at once.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { SHARD_COUNT } from '../../shards/index.js';
import { isRevisionConflict } from './errors.js';
import { openBucket } from './kv.js';
import type { ClusterMac } from './mac.js';
import type { Membership } from './membership.js';
import type { OperatorRequests } from './operator.js';
import { planPlacement } from './placement.js';
import { COORDINATOR_BUCKET, LEADER_KEY } from './protocol.js';
import type { ShardMap } from './shardMap.js';

/** Map writes sent at once. */
const WRITE_CHUNK = 64;

export interface CoordinatorOptions {
  nodeId: string;
  incarnation: string;
  leaseMs: number;
  /** Planned moves in flight at most. */
  maxMoves: number;
  log: Logger;
  /** Seals this node's leader entries and checks the one it reads. */
  mac: ClusterMac;
  clock?: () => number;
}

export interface LeaderRecord {
  node: string;
  incarnation: string;
  /** Rounds led so far (every renewal changes the entry, so watchers see it move). */
  round: number;
  /** When the leader sealed this renewal (ms since the epoch): an old renewal put back is told by it. */
  at?: number;
}

export interface RoundResult {
  leader: boolean;
  assigned: number;
  movesStarted: number;
  movesCancelled: number;
  pending: number;
}

export class Coordinator {
  private revision = 0;
  private renewedAt = Number.NEGATIVE_INFINITY;
  private round = 0;
  private seen: { revision: number; since: number } | null = null;
  private readonly clock: () => number;
  /** The leader as last read: for the admin view and the CLI. */
  leader: string | null = null;

  private constructor(
    private readonly kv: KV,
    private readonly membership: Membership,
    private readonly map: ShardMap,
    private readonly operator: OperatorRequests | null,
    private readonly options: CoordinatorOptions,
  ) {
    this.clock = options.clock ?? (() => performance.now());
  }

  /** `operator`: the drains operators asked for (none when null). */
  static async open(
    nc: NatsConnection,
    membership: Membership,
    map: ShardMap,
    operator: OperatorRequests | null,
    options: CoordinatorOptions,
  ): Promise<Coordinator> {
    const kv = await openBucket(nc, COORDINATOR_BUCKET, { ttlMs: options.leaseMs * 10, log: options.log });
    return new Coordinator(kv, membership, map, operator, options);
  }

  /**
   * Whether this node may write the map now: it holds the entry and renewed it less than
   * half a lease ago. Another node takes the entry only after a whole lease of silence, so
   * two nodes never both lead.
   */
  get leading(): boolean {
    return this.revision > 0 && this.clock() - this.renewedAt < this.options.leaseMs / 2;
  }

  /** One round: take or renew the lead, and if this node leads, move the map one step on. */
  async tick(): Promise<RoundResult> {
    const result: RoundResult = { leader: false, assigned: 0, movesStarted: 0, movesCancelled: 0, pending: 0 };
    if (!(await this.holdLead()) || !this.leading) return result;
    result.leader = true;
    // A node that cannot prove it is alive must not decide for anyone.
    if (!this.membership.leaseValid) return result;
    await this.map.loaded;

    const live = this.membership.live();
    const liveIds = new Set(live.map((member) => member.record.id));
    // Takers: live, not leaving or draining on their own, and not drained by an operator.
    const takers = live
      .filter((member) => member.record.status === 'active' && !(this.operator?.drained.has(member.record.id) ?? false))
      .map((member) => member.record.id);
    let inFlight = 0;
    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      const current = this.map.get(shard);
      if (current?.entry.status !== 'moving') continue;
      if (liveIds.has(current.entry.owner) && !liveIds.has(current.entry.to!)) {
        if (await this.map.cancelMove(shard, current.entry.owner, current.revision)) result.movesCancelled++;
      } else if (liveIds.has(current.entry.owner)) {
        inFlight++;
      }
    }
    const plan = planPlacement({
      takers,
      live: liveIds,
      owners: this.map.owners(),
      maxMoves: this.options.maxMoves - inFlight,
      ...(this.operator === null ? {} : { pins: this.operator.pins }),
    });
    // In parallel, a chunk at a time, so that a round assigning every shard takes a few
    // round trips, not a thousand; the lead is checked between chunks.
    for (let from = 0; from < plan.assign.length; from += WRITE_CHUNK) {
      if (!this.leading) return result;
      const done = await Promise.all(
        plan.assign.slice(from, from + WRITE_CHUNK).map(({ shard, to }) => this.map.assign(shard, to, this.map.revisionOf(shard))),
      );
      result.assigned += done.filter(Boolean).length;
    }
    for (let from = 0; from < plan.moves.length; from += WRITE_CHUNK) {
      if (!this.leading) return result;
      const done = await Promise.all(
        plan.moves.slice(from, from + WRITE_CHUNK).map(({ shard, from: owner, to }) => {
          const current = this.map.get(shard);
          if (current === undefined || current.entry.status !== 'owned' || current.entry.owner !== owner) return false;
          return this.map.startMove(shard, owner, to, current.revision);
        }),
      );
      result.movesStarted += done.filter(Boolean).length;
    }
    result.pending = plan.pending;
    if (result.assigned + result.movesStarted + result.movesCancelled > 0) {
      this.options.log.info({ ...result, takers: takers.length }, 'shard map updated');
    }
    return result;
  }

  /** Gives the lead up (a planned leave): the entry is deleted so another node takes it at once. */
  async resign(): Promise<void> {
    if (this.revision === 0) return;
    const revision = this.revision;
    this.revision = 0;
    await this.kv.delete(LEADER_KEY, { previousSeq: revision }).catch((error: unknown) => {
      // Another node took the lead meanwhile: there is nothing of this node's left to give up.
      if (!isRevisionConflict(error)) throw error;
    });
  }

  /** Renews the lead, or takes it when it is free or its holder has gone silent for a lease. */
  private async holdLead(): Promise<boolean> {
    const { nodeId, incarnation, leaseMs, log } = this.options;
    const record = (): string =>
      this.options.mac.sealEntry(COORDINATOR_BUCKET, LEADER_KEY, { node: nodeId, incarnation, round: ++this.round, at: Date.now() } satisfies LeaderRecord);
    const sentAt = this.clock();
    if (this.revision > 0) {
      try {
        this.revision = await this.kv.update(LEADER_KEY, record(), this.revision, Math.round(leaseMs / 3));
        this.renewedAt = sentAt;
        return true;
      } catch (error) {
        // NATS away or slow: the lead is kept, but lapses on its own after half a lease.
        if (!isRevisionConflict(error)) return this.leading;
        // A renewal stored whose answer was lost: the entry is still this node's own write.
        const entry = await this.readLeader();
        const holder = entry === null ? null : this.holderOf(entry);
        if (entry !== null && holder?.node === nodeId && holder.incarnation === incarnation) {
          this.revision = entry.revision;
          return this.leading;
        }
        this.revision = 0;
        log.warn({ node: nodeId }, 'lost the coordinator lead to another node: no longer writing the shard map');
      }
    }
    const entry = await this.readLeader();
    if (entry === null || entry.operation !== 'PUT') {
      this.revision = await this.compareAndSet(() => this.kv.create(LEADER_KEY, record()));
      this.renewedAt = sentAt;
      if (this.revision > 0) log.info({ node: nodeId }, 'took the coordinator lead');
      this.leader = this.revision > 0 ? nodeId : null;
      return this.revision > 0;
    }
    const holder = this.holderOf(entry);
    if (holder === null) {
      // Not a leader record a node sealed: nobody leads. Taken over at once, on its revision.
      this.revision = await this.compareAndSet(() => this.kv.update(LEADER_KEY, record(), entry.revision));
      this.renewedAt = sentAt;
      if (this.revision > 0) log.info({ node: nodeId }, 'took the coordinator lead (the entry held no leader record)');
      this.leader = this.revision > 0 ? nodeId : null;
      return this.revision > 0;
    }
    this.leader = holder.node;
    if (this.seen === null || this.seen.revision !== entry.revision) {
      this.seen = { revision: entry.revision, since: this.clock() };
      return false;
    }
    if (this.clock() - this.seen.since < leaseMs) return false;
    this.revision = await this.compareAndSet(() => this.kv.update(LEADER_KEY, record(), entry.revision));
    this.renewedAt = sentAt;
    if (this.revision > 0) {
      this.leader = nodeId;
      log.info({ node: nodeId, previous: holder.node }, 'took the coordinator lead from a silent leader');
    }
    return this.revision > 0;
  }

  /** The leader record of a put entry a node sealed; null for anything else. */
  private holderOf(entry: KvEntry): LeaderRecord | null {
    if (entry.operation !== 'PUT') return null;
    return asLeaderRecord(this.options.mac.openEntry('leader', COORDINATOR_BUCKET, entry, { renewed: true }));
  }

  /**
   * The leader entry, or null when there is none or it cannot be read now. Not being able to
   * read it means not taking the lead this round, which is right: NATS being away is seen,
   * and logged, by the membership, whose lease lapses with it.
   */
  private readLeader(): Promise<KvEntry | null> {
    return this.kv.get(LEADER_KEY).catch((error: unknown) => {
      this.options.log.debug({ err: error }, 'coordinator: could not read the leader entry');
      return null;
    });
  }

  /**
   * A write of the leader entry that may lose: the new revision, or 0 when another node won
   * (a compare-and-set conflict) or NATS could not be reached (seen and logged by the
   * membership); the lead is then tried again next round.
   */
  private compareAndSet(write: () => Promise<number>): Promise<number> {
    return write().catch((error: unknown) => {
      if (!isRevisionConflict(error)) this.options.log.debug({ err: error }, 'coordinator: could not write the leader entry');
      return 0;
    });
  }
}

/** A leader entry's record, checked for its fields; null for anything else. */
export function asLeaderRecord(value: unknown): LeaderRecord | null {
  if (typeof value !== 'object' || value === null) return null;
  const { node, incarnation, round } = value as Record<string, unknown>;
  return typeof node === 'string' && typeof incarnation === 'string' && typeof round === 'number' ? (value as LeaderRecord) : null;
}
