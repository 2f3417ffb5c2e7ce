/**
 * A node's part in the cluster (NATS_URL set): it joins the membership, runs coordinator
 * rounds, and serves exactly the shards the map gives it.
 *
 * - A shard the map gives this node is claimed in the fence (its epoch bumped in Postgres),
 *   and only then served. Claims found in one round go in one statement.
 * - A shard the map marks `moving` away from this node stops admitting at once. Once the
 *   shard's actors have nothing in flight, the write-behind flushes, the shard is released,
 *   and the map entry is handed to the new owner (CAS). If the flush fails, the hand-off
 *   waits for the next round: state that is not written is never handed off.
 * - A shard the map gives another node while this one still serves it (this node was taken
 *   for dead) is dropped at once. Its new owner's claim fences any write this node attempts.
 * - Every decision checks the membership lease (ActorRuntime.mayDecide). A node that could
 *   not renew it for half a lease stops deciding. Once its entry has been taken over, it
 *   releases every shard and serves nothing.
 *
 * Requests for shards this node does not own go to their owner (router.ts, forwarder.ts).
 */
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Store } from '../persistence/index.js';
import { type ActorRuntime, SHARD_COUNT, type Shard } from '../shards/index.js';
import type { Config } from './config.js';
import { Coordinator } from './coordinator.js';
import { Membership } from './membership.js';
import { ShardMap } from './shardMap.js';

/** Planned moves in flight across the cluster, at most. */
const MAX_MOVES = 32;
/** How long a hand-off waits for the shard's requests in flight before it flushes anyway. */
const IN_FLIGHT_WAIT_MS = 2000;

export interface ClusterDeps {
  config: Config;
  runtime: ActorRuntime;
  store: Store;
  /** Writes every dirty actor now (after a flush in progress). */
  flush: () => Promise<unknown>;
  log: Logger;
  /** This node's HTTP address, as others should reach it. */
  address: string;
  version: string;
}

export interface ClusterView {
  nodes: { id: string; status: string; address: string; shards: number; self: boolean; lease_age_ms: number; version: string }[];
  leader: string | null;
  shards: { count: number; by_node: Record<string, number>; moving: number[]; moves: { shard: number; from: string; to: string }[]; unassigned: number };
}

export class ClusterNode {
  private readonly claiming = new Set<number>();
  private readonly handingOff = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<void> | null = null;
  private stopped = false;
  private leaseLost = false;
  readonly counts = { shardsClaimed: 0, shardsHandedOff: 0, leaseLosses: 0 };

  private constructor(
    private readonly deps: ClusterDeps,
    readonly connection: NatsConnection,
    readonly membership: Membership,
    readonly map: ShardMap,
    readonly coordinator: Coordinator,
  ) {}

  /** Connects, joins (waiting out a previous incarnation's lease), and starts the rounds. */
  static async start(deps: ClusterDeps, signal?: AbortSignal): Promise<ClusterNode> {
    const { config, log } = deps;
    const nc = await connect({
      servers: config.natsUrl!.split(',').map((url) => url.trim()),
      name: `tally-${config.nodeId}`,
      maxReconnectAttempts: -1,
    });
    try {
      const incarnation = randomBytes(6).toString('hex');
      const membership = await Membership.open(nc, {
        nodeId: config.nodeId,
        incarnation,
        address: deps.address,
        version: deps.version,
        leaseMs: config.leaseMs,
        heartbeatMs: config.heartbeatMs,
        log,
      });
      await membership.join(signal);
      const map = await ShardMap.open(nc, log);
      await map.loaded;
      const coordinator = await Coordinator.open(nc, membership, map, {
        nodeId: config.nodeId,
        incarnation,
        leaseMs: config.leaseMs,
        maxMoves: MAX_MOVES,
        log,
      });
      const node = new ClusterNode(deps, nc, membership, map, coordinator);
      node.begin();
      return node;
    } catch (error) {
      await nc.close().catch(() => undefined);
      throw error;
    }
  }

  private begin(): void {
    const { runtime, config } = this.deps;
    runtime.mayDecide = () => this.membership.leaseValid;
    this.membership.onLeaseLost = () => {
      this.leaseLost = true;
      this.counts.leaseLosses++;
      for (const shard of runtime.shards) if (shard.status !== 'not_owned') runtime.releaseShard(shard);
    };
    this.map.onChange = () => this.schedule();
    this.timer = setInterval(() => this.schedule(), config.heartbeatMs);
    this.schedule();
  }

  /** Shards the map gives this node that it serves, and whether every shard has an owner. */
  health(): { ok: boolean; detail: string } {
    const me = this.deps.config.nodeId;
    let mine = 0;
    let served = 0;
    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      if (this.map.owner(shard) !== me) continue;
      mine++;
      if (this.deps.runtime.shards[shard]!.serving) served++;
    }
    const { unassigned } = this.map.summary();
    if (this.leaseLost) return { ok: false, detail: 'this node lost its member entry to another process; it serves nothing' };
    if (!this.membership.leaseValid) return { ok: false, detail: 'this node’s lease has lapsed (NATS unreachable?)' };
    const ok = served === mine && unassigned === 0;
    return { ok, detail: `${served}/${mine} of this node's shards served; ${unassigned} shards without an owner` };
  }

  view(): ClusterView {
    const me = this.deps.config.nodeId;
    const { byNode, unassigned } = this.map.summary();
    const moves: ClusterView['shards']['moves'] = [];
    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      const entry = this.map.get(shard)?.entry;
      if (entry?.status === 'moving') moves.push({ shard, from: entry.owner, to: entry.to! });
    }
    return {
      nodes: this.membership.live().map(({ record, silentMs }) => ({
        id: record.id,
        status: record.status,
        address: record.address,
        shards: byNode[record.id] ?? 0,
        self: record.id === me,
        lease_age_ms: Math.round(silentMs),
        version: record.version,
      })),
      leader: this.coordinator.leading ? me : this.coordinator.leader,
      shards: { count: SHARD_COUNT, by_node: byNode, moving: moves.map((move) => move.shard), moves, unassigned },
    };
  }

  /**
   * Leaves the cluster after the node has flushed and released its shards: gives the lead
   * up and deletes its member entry, so the others take its shards at once instead of
   * after a lease.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    await this.round?.catch(() => undefined);
    await this.coordinator.resign().catch(() => undefined);
    await this.membership.leave().catch(() => undefined);
    this.membership.close();
    this.map.close();
    await this.connection.drain().catch(() => undefined);
  }

  /** One round at a time: the coordinator's step, then this node's claims and hand-offs. */
  private schedule(): void {
    if (this.stopped || this.round !== null) return;
    this.round = (async () => {
      try {
        await this.coordinator.tick();
        await this.reconcile();
      } catch (error) {
        this.deps.log.warn({ err: error }, 'cluster round failed; trying again at the next heartbeat');
      } finally {
        this.round = null;
      }
    })();
  }

  private async reconcile(): Promise<void> {
    if (this.leaseLost || this.stopped) return;
    const { runtime, config, log } = this.deps;
    const me = config.nodeId;
    const toClaim: number[] = [];
    for (const shard of runtime.shards) {
      const entry = this.map.get(shard.index)?.entry;
      if (entry?.owner !== me) {
        if (shard.status === 'owned' && !this.handingOff.has(shard.index)) {
          log.warn({ shard: shard.index, owner: entry?.owner ?? null }, 'the shard map gives a shard this node serves to another node: dropping it');
          runtime.releaseShard(shard);
        }
        continue;
      }
      if (entry.status === 'moving') {
        if (!this.handingOff.has(shard.index)) void this.handOff(shard, entry.to!);
      } else if (!shard.serving && !this.claiming.has(shard.index)) {
        toClaim.push(shard.index);
      }
    }
    if (toClaim.length > 0 && this.membership.leaseValid) await this.claim(toClaim);
  }

  private async claim(shards: number[]): Promise<void> {
    const { runtime, store, config, log } = this.deps;
    for (const shard of shards) this.claiming.add(shard);
    try {
      const epochs = await store.claimShards(shards, config.nodeId);
      for (const index of shards) {
        // The map may have moved on while the claim was in flight.
        if (this.map.owner(index) !== config.nodeId || this.map.get(index)!.entry.status !== 'owned') continue;
        const shard = runtime.shards[index]!;
        shard.epoch = epochs.get(index)!;
        shard.status = 'owned';
        this.counts.shardsClaimed++;
      }
      log.info({ shards: shards.length }, 'claimed shards');
    } finally {
      for (const shard of shards) this.claiming.delete(shard);
    }
  }

  /** Stops admitting for `shard`, lets what is in flight finish, flushes, releases, hands the entry on. */
  private async handOff(shard: Shard, to: string): Promise<void> {
    const { runtime, flush, log } = this.deps;
    this.handingOff.add(shard.index);
    try {
      if (shard.status === 'owned') shard.status = 'not_owned';
      const until = performance.now() + IN_FLIGHT_WAIT_MS;
      while ([...shard.actors.values()].some((actor) => actor.busy) && performance.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await flush();
      const current = this.map.get(shard.index);
      if (current === undefined || current.entry.status !== 'moving' || current.entry.to !== to) return;
      runtime.releaseShard(shard);
      if (await this.map.handOff(shard.index, to, current.revision)) this.counts.shardsHandedOff++;
      else log.warn({ shard: shard.index, to }, 'hand-off lost its compare-and-set');
    } catch (error) {
      log.warn({ shard: shard.index, to, err: error }, 'hand-off failed (the flush?): trying again next round');
    } finally {
      this.handingOff.delete(shard.index);
    }
  }
}
