/**
 * A node's part in the cluster (NATS_URL set): it joins the membership, runs coordinator
 * rounds, and serves exactly the shards the map gives it.
 *
 * - A shard the map gives this node is claimed in the fence (its epoch bumped in Postgres),
 *   and only then served. Claims found in one round go in one statement.
 * - A shard the map marks `moving` away from this node stops admitting at once. Once the
 *   shard's actors are idle (no written-through change in flight or queued), the shard's
 *   actors are flushed, and only when every one of them is written is the shard released and
 *   the map entry handed to the new owner (CAS). Actors still busy after a lease, a flush
 *   that fails, or a row the database refuses leave the shard here, not admitting, and the
 *   next round tries again: state that is not written is never handed off.
 * - A shard the map gives another node while this one still serves it (this node was taken
 *   for dead) is dropped at once. Its new owner's claim fences any write this node attempts.
 * - Every decision checks the membership lease (ActorRuntime.mayDecide). A node that could
 *   not renew it for half a lease stops deciding. Once its entry has been taken over, it
 *   releases every shard and serves nothing.
 *
 * Requests for shards this node does not own go to their owner (router.ts, forwarder.ts).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { ClusterView } from '../../api/index.js';
import type { Store } from '../../persistence/index.js';
import { type ActorRuntime, SHARD_COUNT, type Shard } from '../../shards/index.js';
import { describeNatsAuth, type NatsAuth, natsConnectOptions } from './connection.js';
import { Coordinator } from './coordinator.js';
import type { ClusterMac } from './mac.js';
import { Membership } from './membership.js';
import { OperatorRequests, statusWithDrain } from './operator.js';
import { EPOCHS_SUBJECT, OPERATOR_REQUESTS_QUEUE, OPERATOR_REQUESTS_SUBJECT } from './protocol.js';
import { ShardMap } from './shardMap.js';
import { CLAIMING, claimStands, handOffStands, nextStep, type ShardActivity, STEADY } from './shardState.js';

/** Planned moves in flight across the cluster, at most. */
const MAX_MOVES = 32;

/** The settings a cluster node runs with (a part of the node's configuration). */
interface ClusterSettings {
  natsUrl: string;
  natsAuth: NatsAuth;
  nodeId: string;
  leaseMs: number;
  heartbeatMs: number;
}

export interface ClusterDeps {
  config: ClusterSettings;
  runtime: ActorRuntime;
  store: Store;
  /**
   * Writes every dirty actor now (after a flush in progress), and returns the actors of
   * `shard` whose state is still not written (their rows were refused). Throws when the
   * flush fails.
   */
  flushShard: (shard: Shard) => Promise<readonly string[]>;
  /** Compares every served shard's epoch with the fence, giving up those another node has claimed. */
  checkFences: () => Promise<void>;
  log: Logger;
  /** Seals what this node writes to the buckets and checks what it reads there. */
  mac: ClusterMac;
  /** This node's HTTP address, as others should reach it. */
  address: string;
  /** HTTP requests received so far (carried in heartbeats, for the console's rates). */
  requests?: () => number;
  /** Quota decisions made as owner so far (carried in heartbeats, for the console's rates). */
  decisions?: () => number;
  version: string;
  /**
   * Called once connected, before the node joins: whatever must answer other nodes (the
   * forwarded requests' subscription) starts here, so nobody is sent a shard's requests
   * before this node listens for them.
   */
  onConnected?: (nc: NatsConnection) => void;
}

/**
 * The node's standing in the cluster:
 * - `member`: it decides for the shards it serves while its lease is valid;
 * - `recovering`: its lease lapsed and was renewed; it decides nothing until the fence has
 *   been read (see `recover`);
 * - `leaving`: it is shutting down: it hands shards off and decides for those it still
 *   serves, but claims none (a claim now would bump epochs and fence its own final flush);
 * - `evicted`: another process took its member entry; it serves nothing, for good;
 * - `stopped`: it has left (or is leaving) the cluster.
 */
type NodePhase = 'member' | 'recovering' | 'leaving' | 'evicted' | 'stopped';

export class ClusterNode {
  /** What this node is doing with each shard, beyond serving it (shardState.ts). */
  private readonly activity: ShardActivity[] = new Array<ShardActivity>(SHARD_COUNT).fill(STEADY);
  private phase: NodePhase = 'member';
  /** A shutdown has begun: a recovery that ends now ends in `leaving`, not `member`. */
  private shuttingDown = false;
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<void> | null = null;
  /** A change arrived during a round: run one more right after it. */
  private again = false;
  /** Woken at every change of the map, the members or the operator requests (drain waits on it). */
  private readonly changed = new Wakeup();
  readonly counts = { shardsClaimed: 0, shardsHandedOff: 0, leaseLosses: 0 };
  /** Called after every change of the shard map this node follows (the NATS API tells clients). */
  onMapChanged: () => void = () => {};

  private constructor(
    private readonly deps: ClusterDeps,
    readonly connection: NatsConnection,
    readonly membership: Membership,
    readonly map: ShardMap,
    readonly coordinator: Coordinator,
    readonly operator: OperatorRequests,
  ) {}

  /** Connects, joins (waiting out a previous incarnation's lease), and starts the rounds. */
  static async start(deps: ClusterDeps, signal?: AbortSignal): Promise<ClusterNode> {
    const { config, log, mac } = deps;
    const nc = await connect({
      ...natsConnectOptions(config.natsAuth),
      servers: config.natsUrl.split(',').map((url) => url.trim()),
      name: `tally-${config.nodeId}`,
      maxReconnectAttempts: -1,
    });
    log.info({ server: nc.getServer(), ...describeNatsAuth(config.natsAuth) }, 'connected to NATS');
    try {
      deps.onConnected?.(nc);
      const incarnation = randomBytes(6).toString('hex');
      const membership = await Membership.open(nc, {
        nodeId: config.nodeId,
        incarnation,
        address: deps.address,
        version: deps.version,
        leaseMs: config.leaseMs,
        heartbeatMs: config.heartbeatMs,
        log,
        mac,
        ...(deps.requests === undefined ? {} : { requests: deps.requests }),
        ...(deps.decisions === undefined ? {} : { decisions: deps.decisions }),
      });
      await membership.join(signal);
      const map = await ShardMap.open(nc, log, mac);
      await map.loaded;
      const operator = await OperatorRequests.open(nc, log, mac);
      const coordinator = await Coordinator.open(nc, membership, map, operator, {
        nodeId: config.nodeId,
        incarnation,
        leaseMs: config.leaseMs,
        maxMoves: MAX_MOVES,
        log,
        mac,
      });
      const node = new ClusterNode(deps, nc, membership, map, coordinator, operator);
      node.begin();
      return node;
    } catch (error) {
      // The start's own error is the one to report; a failure to close adds nothing to it.
      await nc.close().catch(() => undefined);
      throw error;
    }
  }

  private begin(): void {
    const { runtime, config } = this.deps;
    runtime.mayDecide = () => this.membership.leaseValid && (this.phase === 'member' || this.phase === 'leaving');
    this.membership.onLeaseResumed = (gapMs) => this.recover(gapMs);
    this.membership.onLeaseLost = () => {
      if (this.phase !== 'stopped') this.phase = 'evicted';
      this.counts.leaseLosses++;
      for (const shard of runtime.shards) if (shard.status !== 'not_owned') runtime.releaseShard(shard);
      this.changed.notify();
    };
    this.map.onChange = () => {
      this.schedule();
      this.onMapChanged();
    };
    this.membership.onMembersChanged = () => this.schedule();
    this.operator.onChange = () => this.schedule();
    // The CLI asks every node at once for the epochs of the shards it serves.
    this.connection.subscribe(EPOCHS_SUBJECT, {
      callback: (error, msg) => {
        if (error !== null) return;
        const epochs: [number, number][] = [];
        for (const shard of runtime.shards) if (shard.serving) epochs.push([shard.index, shard.epoch]);
        msg.respond(JSON.stringify({ node: config.nodeId, epochs }));
      },
    });
    // What the CLI asks for (drain, move, rebalance): one node writes the sealed entry.
    this.connection.subscribe(OPERATOR_REQUESTS_SUBJECT, {
      queue: OPERATOR_REQUESTS_QUEUE,
      callback: (error, msg) => {
        if (error !== null) return;
        void this.operator
          .answer(msg.data)
          .then((answer) => msg.respond(JSON.stringify(answer)))
          .catch(() => undefined); // the connection is closing: the CLI's request times out and says so
      },
    });
    this.timer = setInterval(() => this.schedule(), config.heartbeatMs);
    this.schedule();
  }

  /**
   * The lease was renewed after a gap (the process was frozen, or NATS was away): another
   * node may have been given this node's shards and claimed them meanwhile, and may have
   * admitted against them since. Nothing is decided here until the fence has been read:
   * every shard claimed by someone else is given up with its actors (their state is stale),
   * and every shard the map now gives elsewhere is dropped. Requests that arrive meanwhile
   * are retried by their router and then go to the owner the map names.
   */
  private recover(gapMs: number): void {
    const { log, checkFences, config } = this.deps;
    if (this.phase !== 'member') return;
    log.warn({ gapMs: Math.round(gapMs) }, 'this node could not renew its lease for half a lease or more; checking the fence before deciding again');
    this.phase = 'recovering';
    void (async () => {
      for (;;) {
        try {
          await checkFences();
          break;
        } catch (error) {
          if (this.phase !== 'recovering') return;
          log.warn({ err: error }, 'fence check after a lapsed lease failed; not deciding until it succeeds');
          await sleep(config.heartbeatMs);
        }
      }
      this.dropShardsGivenElsewhere();
      if (this.phase === 'recovering') this.phase = this.shuttingDown ? 'leaving' : 'member';
      this.schedule();
    })();
  }

  /** Shards the map gives this node that it serves, and whether every shard has an owner. */
  /** Shards the map gives this node, and shards without an owner, as this node sees the map now. */
  shardCounts(): { shardsAssigned: number; shardsUnassigned: number } {
    const { byNode, unassigned } = this.map.summary();
    return { shardsAssigned: byNode[this.deps.config.nodeId] ?? 0, shardsUnassigned: unassigned };
  }

  /** Whether this node can take requests: a member with a valid lease, connected to NATS. */
  readiness(): { ok: boolean; detail?: string } {
    if (this.phase === 'evicted') return { ok: false, detail: 'this node lost its member entry to another process; it serves nothing' };
    if (this.connection.isClosed()) return { ok: false, detail: 'the NATS connection is closed' };
    if (!this.membership.leaseValid) return { ok: false, detail: 'this node’s lease has lapsed (NATS unreachable?)' };
    return { ok: true };
  }

  /**
   * The shards as this node sees them (readiness does not depend on it): ok when it serves
   * every shard the map gives it and every shard has an owner. False while shards move.
   */
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
    if (this.phase === 'evicted') return { ok: false, detail: 'this node lost its member entry to another process; it serves nothing' };
    if (!this.membership.leaseValid) return { ok: false, detail: 'this node’s lease has lapsed (NATS unreachable?)' };
    const ok = served === mine && unassigned === 0;
    return { ok, detail: `${served}/${mine} of this node's shards served; ${unassigned} shards without an owner` };
  }

  view(): ClusterView {
    const me = this.deps.config.nodeId;
    const { byNode, unassigned, moves } = this.map.summary();
    return {
      nodes: this.membership.live().map(({ record, silentMs }) => ({
        id: record.id,
        status: statusWithDrain(record, this.operator),
        address: record.address,
        shards: byNode[record.id] ?? 0,
        self: record.id === me,
        lease_age_ms: Math.round(silentMs),
        version: record.version,
        requests: record.requests ?? 0,
      })),
      leader: this.coordinator.leading ? me : this.coordinator.leader,
      shards: {
        count: SHARD_COUNT,
        by_node: byNode,
        moving: moves.map((move) => move.shard),
        moves,
        unassigned,
        owners: Array.from({ length: SHARD_COUNT }, (_, shard) => this.map.owner(shard) ?? null),
      },
    };
  }

  /**
   * The first half of a planned leave: marks this node draining, so that the coordinator
   * moves its shards to the other nodes by planned hand-offs (32 in flight at most), and
   * waits until the map gives it none, at most `timeoutMs`. The node keeps serving what it
   * still owns and forwarding the rest meanwhile. Returns at once when no other node could
   * take the shards. Whatever is left at the end is released by `stop()` as after a crash,
   * only sooner: the others claim it without waiting for a lease.
   */
  async drain(timeoutMs: number): Promise<{ drained: boolean; moved: number; ms: number }> {
    const { log } = this.deps;
    this.shuttingDown = true;
    if (this.phase === 'member') this.phase = 'leaving';
    const started = performance.now();
    const before = this.ownedInMap();
    const result = (drained: boolean) => ({ drained, moved: before - this.ownedInMap(), ms: Math.round(performance.now() - started) });
    if (timeoutMs === 0 || this.phase === 'evicted' || before === 0) return result(before === 0);
    if (!this.othersCanTake()) {
      log.info('draining: no other active node to take this node’s shards');
      return result(false);
    }
    try {
      await this.membership.setStatus('draining');
    } catch (error) {
      log.warn({ err: error }, 'draining: could not mark this node draining; releasing its shards instead');
      return result(false);
    }
    log.info({ shards: before }, 'draining: handing this node’s shards to the others');
    this.schedule();
    // Every hand-off changes the map, and every change wakes this loop.
    while (this.ownedInMap() > 0 && this.othersCanTake() && !this.evicted) {
      const left = timeoutMs - (performance.now() - started);
      if (left <= 0) break;
      await this.changed.wait(left);
    }
    const done = result(this.ownedInMap() === 0);
    if (done.drained) log.info(done, 'drained: every shard handed off');
    else log.warn({ ...done, left: this.ownedInMap() }, 'draining stopped before every shard was handed off; the rest is released');
    return done;
  }

  private get evicted(): boolean {
    return this.phase === 'evicted';
  }

  /** Shards the map gives this node, moving away or not. */
  private ownedInMap(): number {
    const me = this.deps.config.nodeId;
    let owned = 0;
    for (let shard = 0; shard < SHARD_COUNT; shard++) if (this.map.owner(shard) === me) owned++;
    return owned;
  }

  private othersCanTake(): boolean {
    const me = this.deps.config.nodeId;
    return this.membership.live().some(({ record }) => record.id !== me && record.status === 'active' && !this.operator.drained.has(record.id));
  }

  /**
   * Leaves the cluster after the node has flushed and released its shards: gives the lead
   * up and deletes its member entry, so the others take its shards at once instead of
   * after a lease.
   */
  async stop(): Promise<void> {
    const { log } = this.deps;
    this.phase = 'stopped';
    if (this.timer !== null) clearInterval(this.timer);
    this.changed.notify();
    // A failed round has been logged by the round itself.
    await this.round?.catch(() => undefined);
    // Each step is tried even when one before it failed: what is not undone here, the lease undoes.
    await this.coordinator
      .resign()
      .catch((error: unknown) => log.warn({ err: error }, 'leaving: could not give the coordinator lease up; another node takes it after a lease'));
    await this.membership
      .leave()
      .catch((error: unknown) => log.warn({ err: error }, 'leaving: could not delete the member entry; the others take its shards after a lease'));
    this.membership.close();
    this.map.close();
    this.operator.close();
    await this.connection.drain().catch((error: unknown) => log.warn({ err: error }, 'leaving: draining the NATS connection failed'));
  }

  /**
   * One round at a time: the coordinator's step, then this node's claims and hand-offs. A
   * change seen during a round runs one more round right after it, so a move that ends
   * mid-round is followed up at once, not at the next heartbeat.
   */
  private schedule(): void {
    this.changed.notify();
    if (this.phase === 'stopped') return;
    if (this.round !== null) {
      this.again = true;
      return;
    }
    this.round = (async () => {
      try {
        await this.coordinator.tick();
        await this.reconcile();
      } catch (error) {
        this.deps.log.warn({ err: error }, 'cluster round failed; trying again at the next heartbeat');
      } finally {
        this.round = null;
        if (this.again) {
          this.again = false;
          this.schedule();
        }
      }
    })();
  }

  /** Takes, for every shard, the step `nextStep` gives; the claims found in one round go in one statement. */
  private async reconcile(): Promise<void> {
    if (this.phase === 'evicted' || this.phase === 'stopped') return;
    const { runtime, config, log } = this.deps;
    const me = config.nodeId;
    // From the first step of a shutdown on, nothing is claimed (see NodePhase).
    const mayClaim = this.membership.leaseValid && this.phase === 'member';
    const toClaim: number[] = [];
    for (const shard of runtime.shards) {
      const step = nextStep(me, mayClaim, { activity: this.activity[shard.index]!, serving: shard.serving, map: this.map.get(shard.index) });
      switch (step.kind) {
        case 'none':
          break;
        case 'claim':
          toClaim.push(shard.index);
          break;
        case 'handOff':
          void this.handOff(shard, step.to);
          break;
        case 'drop':
          log.warn({ shard: shard.index, owner: step.owner }, 'the shard map gives a shard this node serves to another node: dropping it');
          runtime.releaseShard(shard);
          break;
        case 'forget':
          this.activity[shard.index] = STEADY;
          break;
      }
    }
    if (toClaim.length > 0) await this.claim(toClaim);
  }

  /**
   * After a lapsed lease, before deciding again: the `drop` steps alone (a shard the map now
   * gives another node is dropped with its actors, their state being stale).
   */
  private dropShardsGivenElsewhere(): void {
    const { runtime, config, log } = this.deps;
    for (const shard of runtime.shards) {
      const step = nextStep(config.nodeId, false, { activity: this.activity[shard.index]!, serving: shard.serving, map: this.map.get(shard.index) });
      if (step.kind !== 'drop') continue;
      log.warn({ shard: shard.index, owner: step.owner }, 'the shard map gives a shard this node serves to another node: dropping it');
      runtime.releaseShard(shard);
    }
  }

  private async claim(shards: number[]): Promise<void> {
    const { runtime, store, config, log } = this.deps;
    for (const shard of shards) this.activity[shard] = CLAIMING;
    try {
      const epochs = await store.claimShards(shards, config.nodeId);
      for (const index of shards) {
        // The map may have moved on while the claim was in flight.
        if (!claimStands(config.nodeId, this.map.get(index))) continue;
        const shard = runtime.shards[index]!;
        shard.epoch = epochs.get(index)!;
        shard.status = 'owned';
        this.counts.shardsClaimed++;
      }
      log.info({ shards: shards.length }, 'claimed shards');
    } finally {
      for (const shard of shards) this.activity[shard] = STEADY;
    }
  }

  /**
   * Stops admitting for `shard`, waits until its actors are idle, flushes them, and only when
   * every one is written releases the shard and hands the entry on. Otherwise the shard stays
   * here, not admitting, and the next round tries again.
   */
  private async handOff(shard: Shard, to: string): Promise<void> {
    const { runtime, flushShard, config, log } = this.deps;
    this.activity[shard.index] = { kind: 'handingOff', to };
    let handedOff: ShardActivity = STEADY;
    try {
      if (shard.status === 'owned') shard.status = 'not_owned';
      // Nothing new starts now (a queued written-through change checks, at its turn, that the
      // shard is served); what has started is let finish, so that it commits before the new
      // owner claims and loads. A change still running after a lease is not waited for any
      // longer: by then this node could itself have been taken for dead. The hand-off fails
      // and the next round waits again; were the change to commit after a claim all the
      // same, the fence would refuse it (its caller is answered 503, and retries).
      if (!(await actorsIdle(shard, config.leaseMs))) {
        log.warn(
          { shard: shard.index, to, waitedMs: config.leaseMs },
          'hand-off: changes of this shard’s users still running after a lease; trying again next round',
        );
        return;
      }
      const unwritten = await flushShard(shard);
      if (unwritten.length > 0) {
        // Their usage exists only in this node's memory: handing the shard over would drop it.
        log.error(
          { shard: shard.index, to, unwritten: unwritten.length, entities: unwritten.slice(0, 10) },
          'hand-off: the database refused the state of actors of this shard; not handing it over, trying again next round',
        );
        return;
      }
      const current = this.map.get(shard.index);
      if (!handOffStands(to, current)) return;
      runtime.releaseShard(shard);
      if (await this.map.handOff(shard.index, to, current!.revision)) {
        handedOff = { kind: 'handedOff', revision: current!.revision };
        this.counts.shardsHandedOff++;
      } else {
        log.warn({ shard: shard.index, to }, 'hand-off lost its compare-and-set');
      }
    } catch (error) {
      log.warn({ shard: shard.index, to, err: error }, 'hand-off failed (the flush?): trying again next round');
    } finally {
      this.activity[shard.index] = handedOff;
    }
  }
}

/**
 * Whether every actor of `shard` became idle (no exclusive task running or queued) within
 * `timeoutMs`. Tasks queued while it waits count too: it looks again each time those it
 * waited for have settled.
 */
async function actorsIdle(shard: Shard, timeoutMs: number): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const busy: Promise<void>[] = [];
    for (const actor of shard.actors()) if (actor.busy) busy.push(actor.idle());
    if (busy.length === 0) return true;
    const left = until - performance.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(busy),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, left);
      }),
    ]);
    clearTimeout(timer);
  }
}

/** Lets callers sleep until something changes (`notify`) or their time runs out. */
class Wakeup {
  private readonly waiting = new Set<() => void>();

  notify(): void {
    for (const wake of this.waiting) wake();
    this.waiting.clear();
  }

  wait(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, timeoutMs);
      this.waiting.add(wake);
    });
  }
}
