/**
 * One Tally process, and the only place that wires the folders together. `start` opens
 * everything in dependency order (a failed start closes what it opened, newest first);
 * `stop` runs the shutdown steps, a list in `shutdownSteps`: not ready → hand shards over →
 * grace period → stop accepting → finish in-flight → stop deciding → flush → release shards → leave the
 * cluster → close connections, so that no admitted request and no counted unit is lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Accounts } from '../accounts/index.js';
import { type Router, TierAdmin } from '../api/index.js';
import { ApiKeys, deriveKeys, loadOrCreateSecret, SessionTokens } from '../credentials/index.js';
import { createHttpServer, type HealthReport, type HttpServer, probeListen } from '../http/index.js';
import { NatsApi } from '../nats/index.js';
import {
  type Database,
  emptyReplicaStats,
  migrate,
  openDatabase,
  openReplica,
  type RedisReplica,
  readIncarnation,
  Store,
  WriteBehind,
} from '../persistence/index.js';
import { ActorRuntime, coalesced, initHashing, LimiterService, SHARD_COUNT, type Shard, shardOf, TierRegistry, UserService } from '../shards/index.js';
import { ClusterMac, ClusterNode, ClusterRouter, Forwarder, TIER_EDITS_SUBJECT } from './cluster/index.js';
import type { Config } from './config.js';
import { FailOpen } from './failOpen.js';
import { OpenedResources, PeriodicTasks, runStopSteps, type StopStep } from './lifecycle.js';
import { createLogger } from './logger.js';
import { Metrics } from './metrics.js';
import { RATE_INTERVAL_MS, RateHistory } from './rates.js';
import { announcing, Revocations } from './revocations.js';
import { LocalRouter } from './router.js';
import { VERSION } from './version.js';

/** Tiers are reloaded this often too, for an edit whose broadcast was missed (see src/api/tiers.ts). */
const TIER_REFRESH_MS = 5_000;
const NEGATIVE_CACHE_TTL_MS = 5_000;
/** Expired limiter rows are deleted this often, this many at a time. */
const EXPIRY_SWEEP_MS = 60_000;
const EXPIRY_BATCH = 10_000;
/** The usage history's partitions are made ahead and dropped past retention this often. */
const USAGE_PARTITIONS_MS = 3_600_000;
/** An activation waits this long for the Redis replica's copy, then goes on with Postgres alone. */
const REPLICA_READ_TIMEOUT_MS = 200;
/** A readiness probe waits this long for the database's answer. */
const DATABASE_CHECK_MS = 2_000;
/**
 * How often every served shard's epoch is compared with the fence. A load or a refused write
 * finds a newer owner of its own shard at once; this finds the rest (one lost shard also
 * starts a check right away).
 */
const FENCE_CHECK_MS = 5_000;

/** What a cluster node runs besides what a single node runs. */
interface ClusterParts {
  node: ClusterNode;
  forwarder: Forwarder;
  mac: ClusterMac;
  natsApi: NatsApi;
}

/** What `openServices` makes: credentials, routers and accounts. */
interface Services {
  tokens: SessionTokens;
  apiKeys: ApiKeys;
  /** Null on a single node. */
  clusterRouter: ClusterRouter | null;
  router: Router;
  accounts: Accounts;
  /** Announces committed revocations; in a cluster, hears the other nodes' (revocations.ts). */
  revocations: Revocations;
  /** Seals what this node tells the others (a cluster node's). */
  clusterMac: ClusterMac;
}

/** Everything a started node runs: made by `open`, taken apart by the shutdown steps. */
interface Parts {
  database: Database;
  store: Store;
  replica: RedisReplica | null;
  http: HttpServer;
  writeBehind: WriteBehind;
  /** Null on a single node. */
  cluster: ClusterParts | null;
}

export class TallyNode {
  readonly log: Logger;
  readonly runtime: ActorRuntime;
  readonly tiers = new TierRegistry();
  readonly metrics: Metrics;
  /** Set once `open` has finished; null before, after a failed start, and after shutdown. */
  private parts: Parts | null = null;
  /**
   * The two parts observed while the node starts and stops, as soon as they exist: the HTTP
   * server (requests in flight, for the metrics) and the database (for readiness).
   */
  private http: HttpServer | null = null;
  private database: Database | null = null;
  private readonly tasks: PeriodicTasks;
  private readonly startAbort = new AbortController();
  private ready = false;
  private starting: Promise<this> | null = null;
  private stopping: Promise<void> | null = null;
  private stopRequested = false;
  /** The fence check in progress, if any: checks never overlap. */
  private checking: Promise<void> | null = null;
  /** The port HTTP listens on (useful when configured as 0). */
  port = 0;
  /** Every member's quota decision rate over the last 15 minutes, for the console (rates.ts). */
  private readonly rates = new RateHistory();

  /** What decides "now" for requests: `Date.now`, unless a test gives its own (`options.clock`). */
  private readonly clock: () => number;

  constructor(
    readonly config: Config,
    log?: Logger,
    options: { clock?: () => number } = {},
  ) {
    this.clock = options.clock ?? Date.now;
    this.log = log ?? createLogger({ level: config.logLevel, format: config.logFormat, nodeId: config.nodeId });
    this.tasks = new PeriodicTasks(this.log);
    this.runtime = new ActorRuntime({
      maxActors: config.maxActors,
      idleMs: config.actorIdleMs,
      negativeTtlMs: NEGATIVE_CACHE_TTL_MS,
      negativeMax: 100_000,
    });
    this.runtime.onShardLost = (shard, newerEpoch) => this.shardLost(shard, newerEpoch);
    this.metrics = new Metrics({
      activeActors: () => this.runtime.size,
      dirtyActors: () => this.runtime.unwrittenCount,
      ownedShards: () => this.servedShards(),
      lostShards: () => this.lostShards().length,
      requestsInFlight: () => this.http?.inFlight ?? 0,
      quarantinedRows: () => this.parts?.writeBehind.quarantined ?? 0,
      storeLoads: () => this.parts?.store.loads ?? { user: 0, state: 0 },
      refusedAtCapacity: () => this.runtime.stats.refusedAtCapacity,
      evicted: () => this.runtime.stats.evictions,
      passivated: () => this.runtime.stats.passivations,
      ...(config.redisUrl === undefined
        ? {}
        : { replica: () => ({ stats: this.parts?.replica?.stats ?? emptyReplicaStats(), up: this.parts?.replica?.up ?? false }) }),
      cluster: () => {
        const cluster = this.parts?.cluster;
        return {
          forwardBatches: cluster?.forwarder.stats.batches ?? 0,
          forwardedItems: cluster?.forwarder.stats.items ?? 0,
          forwardFailures: cluster?.forwarder.stats.failures ?? 0,
          forwardRefused: cluster?.forwarder.stats.refusedBatches ?? 0,
          unsealed: cluster?.mac.refused ?? {},
          shardsClaimed: cluster?.node.counts.shardsClaimed ?? 0,
          shardsHandedOff: cluster?.node.counts.shardsHandedOff ?? 0,
          leaseLosses: cluster?.node.counts.leaseLosses ?? 0,
          ...(cluster?.node.shardCounts() ?? { shardsAssigned: 0, shardsUnassigned: 0 }),
        };
      },
    });
  }

  /**
   * Brings the node up; a failure closes what was opened (the port, the database) before it
   * is thrown. A `stop()` while starting ends the start at its next step (`StartAbortedError`)
   * and then shuts down as usual.
   */
  start(): Promise<this> {
    this.starting ??= (async () => {
      const opened = new OpenedResources();
      try {
        this.parts = await this.open(opened);
      } catch (error) {
        await opened.closeAll(this.log);
        this.http = null;
        this.database = null;
        throw error;
      }
      this.ready = true;
      this.log.info(this.describe(), 'tally is serving');
      return this;
    })();
    return this.starting;
  }

  /** Between the steps of `open`: a stop requested meanwhile ends the start here. */
  private checkpoint(): void {
    if (this.stopRequested) throw new StartAbortedError();
  }

  /** Opens and wires everything, in dependency order; each resource is added to `opened` as soon as it exists. */
  private async open(opened: OpenedResources): Promise<Parts> {
    const { config, log } = this;
    // Fail at once, not after opening the database, when the port is not ours to take.
    if (config.httpPort !== 0) {
      const busy = await probeListen(config.httpHost, config.httpPort);
      if (busy !== null) throw busy;
    }
    await initHashing();
    const { database, store, replica } = await this.openStorage(opened);
    const tierAdmin = new TierAdmin(store, this.tiers);
    await tierAdmin.refresh();
    this.checkpoint();

    const services = await this.openServices(store);
    this.checkpoint();
    const http = this.createHttp(services, tierAdmin, store);
    this.http = http;
    // The port is bound before any shard is claimed: a node that cannot serve (the port is
    // another process's) must not take the shards of one that can. Until the claim, requests
    // find no owned shard and the node is not ready.
    this.port = await http.listen(config.httpHost, config.httpPort);
    opened.add('stop accepting', () => http.stopAccepting());
    this.checkpoint();

    const writeBehind = new WriteBehind(this.runtime, store, this.metrics, log);
    let cluster: ClusterParts | null = null;
    const { clusterRouter, router, tokens } = services;
    if (clusterRouter === null || config.natsUrl === undefined) {
      // A single node serves every shard, each under a freshly bumped epoch, so that any
      // write a previous process might still attempt is refused by the fence.
      const epochs = await store.claimShards([...Array(SHARD_COUNT).keys()], config.nodeId);
      for (const shard of this.runtime.shards) {
        shard.epoch = epochs.get(shard.index)!;
        shard.status = 'owned';
      }
    } else {
      const { node, forwarder } = await this.joinCluster(config.natsUrl, store, writeBehind, clusterRouter, services.clusterMac, opened);
      this.listenForTierEdits(node.connection, tierAdmin);
      services.revocations.listen(node.connection);
      const natsApi = await NatsApi.start(node.connection, {
        router,
        tokens,
        usage: store,
        clock: this.clock,
        log,
        version: VERSION,
        nodeId: config.nodeId,
        maxInFlight: config.natsMaxInFlight,
        keys: services.apiKeys,
        shardOwners: () => Array.from({ length: SHARD_COUNT }, (_, shard) => node.map.owner(shard)),
      });
      node.onMapChanged = () => natsApi.mapChanged();
      opened.add('stop the NATS API', () => natsApi.stop(0));
      cluster = { node, forwarder, natsApi, mac: services.clusterMac };
    }

    this.startTasks(store, writeBehind, replica, tierAdmin);
    this.sampleRates(cluster);
    this.tasks.every('rate sampling', RATE_INTERVAL_MS, async () => this.sampleRates(cluster));
    opened.add('stop periodic tasks', () => this.tasks.stopAll());
    return { database, store, replica, http, writeBehind, cluster };
  }

  /** Credentials, the domain services, the router that reaches their owners, and accounts. */
  private async openServices(store: Store): Promise<Services> {
    const { config, log } = this;
    const keys = deriveKeys(config.keySecret ?? (await loadOrCreateSecret(config.dataDir, 'key-secret')));
    const tokens = new SessionTokens(config.jwtSecret ?? (await loadOrCreateSecret(config.dataDir, 'jwt-secret')));
    const apiKeys = new ApiKeys(keys.apiKeyMac, await store.unsignedKeys());
    const failOpen = new FailOpen(this.tiers, (userId) => store.findTier(userId), this.metrics);
    const revocations = new Revocations(failOpen, log);
    const users = new UserService(this.runtime, announcing(store, revocations.announce), this.tiers);
    const limiters = new LimiterService(this.runtime, store, this.tiers);
    const clusterRouter = config.natsUrl === undefined ? null : new ClusterRouter(this.runtime, users, limiters, failOpen, this.clock);
    const router = clusterRouter ?? new LocalRouter(users, limiters, failOpen, this.clock);
    const accounts = new Accounts(store, router, tokens, this.tiers, { sessionTtlMs: config.sessionTtlMs, emailKey: keys.loginEmail, log });
    return { tokens, apiKeys, clusterRouter, router, accounts, revocations, clusterMac: new ClusterMac(keys.clusterMac, log) };
  }

  /** The HTTP server, its routes wired to the services and to this node's health, view and metrics. */
  private createHttp({ router, accounts, apiKeys, tokens }: Services, tierAdmin: TierAdmin, store: Store): HttpServer {
    const { config, log } = this;
    return createHttpServer(
      {
        router,
        accounts,
        apiKeys,
        tiers: tierAdmin,
        usage: store,
        clock: this.clock,
        health: () => this.health(),
        cluster: () => this.clusterView(),
        rates: () => this.rates.view(Date.now()),
        placement: (key) => {
          const shard = shardOf(key);
          const cluster = this.parts?.cluster;
          return { shard, owner: config.natsUrl === undefined ? config.nodeId : (cluster?.node.map.owner(shard) ?? null) };
        },
        metrics: async () => ({ contentType: this.metrics.contentType, text: await this.metrics.text() }),
      },
      {
        credentials: { tokens, keys: apiKeys },
        adminToken: config.adminToken,
        serviceToken: config.serviceToken,
        trustProxy: config.trustProxy,
        metrics: this.metrics,
        log,
        ...(config.accessLog ? { accessLog: { sample: config.accessLogSample } } : {}),
        version: VERSION,
      },
    );
  }

  /** The periodic tasks: flush, replica push, sweep, tier refresh, expired-state deletion, fence check. */
  private startTasks(store: Store, writeBehind: WriteBehind, replica: RedisReplica | null, tierAdmin: TierAdmin): void {
    const { config, tasks } = this;
    tasks.every('write-behind flush', config.flushIntervalMs, () => writeBehind.flush());
    if (replica !== null) {
      tasks.every('replica push', config.replicaIntervalMs, async () => {
        // While Redis is away, changed actors stay queued, each once, for the first push after.
        if (!replica.connected) return replica.unreachable(this.runtime.replicaPending);
        const now = Date.now();
        const batch = this.runtime.collectReplica(now);
        if ((await replica.push(batch.rows, now)) === null) batch.requeue();
      });
    }
    tasks.every('actor sweep', config.flushIntervalMs, async () => this.runtime.sweep(Date.now()));
    tasks.every('tier refresh', TIER_REFRESH_MS, () => tierAdmin.refresh());
    tasks.every('expired state deletion', EXPIRY_SWEEP_MS, () => store.deleteExpiredStates(EXPIRY_BATCH));
    tasks.every('usage partitions', USAGE_PARTITIONS_MS, () => this.maintainUsagePartitions(store));
    tasks.every('fence check', FENCE_CHECK_MS, () => this.checkFences(store));
  }

  /**
   * The usage history's monthly partitions: this month's and the next two's made ahead, those
   * past retention dropped. In a cluster, only the node that coordinates does it (the work
   * is idempotent, so a change of coordinator in between costs nothing).
   */
  private async maintainUsagePartitions(store: Store): Promise<void> {
    const cluster = this.parts?.cluster;
    if (cluster !== undefined && cluster !== null && !cluster.node.coordinator.leading) return;
    const now = this.clock();
    const { made, dropped } = await store.maintainUsagePartitions(new Date(now), new Date(now - this.config.usageRetentionDays * 86_400_000));
    if (made > 0 || dropped.length > 0) this.log.info({ made, dropped }, 'usage history partitions maintained');
  }

  /**
   * One sample of every member's quota decision count for the console's rates: this node's
   * own on a single node; in a cluster, what each member's latest heartbeat carried, at the
   * time it was sealed (members of a build before decisions were carried have no line).
   */
  private sampleRates(cluster: ClusterParts | null): void {
    const now = Date.now();
    if (cluster === null) {
      this.rates.sample(now, [{ id: this.config.nodeId, incarnation: '', count: this.runtime.stats.decisions, at: now }]);
      return;
    }
    const samples = cluster.node.membership
      .all()
      .flatMap(({ record: { id, incarnation, decisions, at } }) =>
        decisions === undefined || at === undefined ? [] : [{ id, incarnation, count: decisions, at }],
      );
    this.rates.sample(now, samples);
  }

  /** The database (migrated), the optional Redis replica, and the store over both. */
  private async openStorage(opened: OpenedResources): Promise<{ database: Database; store: Store; replica: RedisReplica | null }> {
    const { config, log } = this;
    const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
    this.database = database;
    opened.add('close the database', () => database.close());
    this.checkpoint();
    const { applied } = await migrate(database.sql);
    this.checkpoint();
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    let replica: RedisReplica | null = null;
    if (config.redisUrl !== undefined) {
      // Keys expire once an actor would have been passivated: Redis holds the active ones.
      const opening = await openReplica(
        config.redisUrl,
        {
          prefix: config.redisPrefix,
          incarnation: await readIncarnation(database.sql),
          ttlMs: config.actorIdleMs,
          readTimeoutMs: REPLICA_READ_TIMEOUT_MS,
        },
        log,
      );
      replica = opening;
      opened.add('close the replica', () => opening.close());
      this.runtime.keepReplica();
    }
    const store = new Store(database.sql, replica);
    // Every node at start (the hourly task runs on the coordinator only): a node started
    // long after the last one ran still has this month's partition before its first write.
    await this.maintainUsagePartitions(store);
    return { database, store, replica };
  }

  /**
   * Joins the cluster: the shard map says which shards are this node's, and it claims them
   * as the map gives them (see cluster/clusterNode.ts). Forwarded requests are answered from
   * the moment the connection is up, before the node joins.
   */
  private async joinCluster(
    natsUrl: string,
    store: Store,
    writeBehind: WriteBehind,
    router: ClusterRouter,
    mac: ClusterMac,
    opened: OpenedResources,
  ): Promise<Omit<ClusterParts, 'natsApi' | 'mac'>> {
    const { config, log } = this;
    let forwarder: Forwarder | null = null;
    const node = await ClusterNode.start(
      {
        config: { natsUrl, natsAuth: config.natsAuth, nodeId: config.nodeId, leaseMs: config.leaseMs, heartbeatMs: config.heartbeatMs },
        mac,
        runtime: this.runtime,
        store,
        flushShard: async (shard) => (await writeBehind.flushShards([shard])).unwritten.get(shard.index) ?? [],
        checkFences: () => this.checkFences(store),
        requests: () => this.http?.requestsReceived ?? 0,
        decisions: () => this.runtime.stats.decisions,
        log,
        address: this.describe().url as string,
        version: VERSION,
        onConnected: (nc) => {
          forwarder = new Forwarder(nc, log, mac);
          forwarder.serve(config.nodeId, (item) => router.decide(item));
        },
      },
      this.startAbort.signal,
    );
    opened.add('leave the cluster', () => node.stop());
    this.checkpoint();
    // Set by onConnected, which ClusterNode.start calls before it resolves.
    const connected = forwarder as Forwarder | null;
    if (connected === null) throw new Error('the cluster node started without connecting');
    router.attach({ nodeId: config.nodeId, owner: (shard) => node.map.owner(shard), forward: (owner, item) => connected.send(owner, item) });
    return { node, forwarder: connected };
  }

  /** Tier edits made on other nodes, installed here at once; all tiers reloaded after NATS reconnects. */
  private listenForTierEdits(nc: NatsConnection, tierAdmin: TierAdmin): void {
    // Any number of edit messages while a reload runs ask for one more reload, not one each.
    const refresh = coalesced(async () => {
      await tierAdmin.refresh();
    });
    const reload = (why: string) =>
      void refresh().catch((error: unknown) => this.log.warn({ err: error, why }, 'tier reload failed; the periodic reload retries'));
    tierAdmin.onEdited = (name) => nc.publish(TIER_EDITS_SUBJECT, name);
    nc.subscribe(TIER_EDITS_SUBJECT, { callback: () => reload('a tier was edited on another node') });
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'reconnect') reload('NATS reconnected');
    })();
  }

  /** What the start line says: where to reach the node and what it uses, never a credential. */
  private describe(): Record<string, unknown> {
    const { config } = this;
    const host = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? 'localhost' : config.httpHost;
    return {
      url: `http://${host.includes(':') ? `[${host}]` : host}:${this.port}`,
      listen: `${config.httpHost.includes(':') ? `[${config.httpHost}]` : config.httpHost}:${this.port}`,
      port: this.port,
      version: VERSION,
      database: config.databaseUrl === undefined ? `embedded PGlite in ${config.dataDir}` : `postgres at ${urlHosts(config.databaseUrl)}`,
      nats: config.natsUrl === undefined ? 'none (single node)' : `${urlHosts(config.natsUrl)} (cluster mode, node ${config.nodeId})`,
      redis: config.redisUrl === undefined ? 'none' : `${urlHosts(config.redisUrl)} (replica cache, every ${config.replicaIntervalMs} ms)`,
      shards: this.servedShards(),
      admin: config.adminToken === undefined ? 'off (no TALLY_ADMIN_TOKEN)' : 'on',
      service: config.serviceToken === undefined ? 'off (no TALLY_SERVICE_TOKEN)' : 'on',
    };
  }

  /** Graceful shutdown; safe to call more than once, and while starting (it waits for the start to end). */
  stop(): Promise<void> {
    this.stopRequested = true;
    this.startAbort.abort(new StartAbortedError());
    this.stopping ??= (async () => {
      // A start that failed has closed what it opened, and logged nothing yet: its error is the caller's.
      await this.starting?.catch(() => undefined);
      const parts = this.parts;
      try {
        if (parts !== null) await runStopSteps(this.shutdownSteps(parts), this.log);
      } finally {
        this.parts = null;
        this.http = null;
        this.database = null;
      }
      this.log.info('stopped');
    })();
    return this.stopping;
  }

  /**
   * The shutdown, in the order it runs: not ready (answers ask to close their connections) →
   * hand the shards to the others → the rest of the grace period → stop accepting → finish what is in flight → stop deciding → flush → release the shards →
   * leave the cluster → close connections. No admitted request and no counted unit is lost.
   */
  private shutdownSteps({ database, replica, http, writeBehind, cluster }: Parts): StopStep[] {
    const { config, log, runtime } = this;
    let readinessFailedAt = performance.now();
    return [
      {
        // A balancer sees readiness fail at its next checks; until the grace period is over
        // the node answers as before, each answer asking for its connection to be closed.
        name: 'fail readiness',
        run: () => {
          this.ready = false;
          readinessFailedAt = performance.now();
          http.closeConnections();
        },
      },
      {
        // In a cluster the shards go to the others first, by planned hand-offs, while this node
        // still answers: no request waits for a lease or sees an owner missing.
        name: 'hand the shards to the other nodes',
        run: () => cluster?.node.drain(config.drainTimeoutMs),
        tolerated: 'draining failed; the shards left are released after the final flush',
      },
      {
        name: 'wait out the grace period',
        run: () => sleep(Math.max(0, config.shutdownGraceMs - (performance.now() - readinessFailedAt))),
      },
      { name: 'stop accepting', run: () => http.stopAccepting() },
      {
        name: 'finish requests in flight',
        run: async () => {
          const idle = http.waitIdle(config.shutdownTimeoutMs).then((left) => {
            // At once, before any more input is read: see HttpServer.closeAll.
            http.closeAll();
            return left;
          });
          const [left] = await Promise.all([idle, cluster?.natsApi.stop(config.shutdownTimeoutMs)]);
          if (left > 0) log.warn({ left }, 'shutting down with requests still in flight');
        },
      },
      { name: 'stop periodic tasks', run: () => this.tasks.stopAll() },
      {
        // Nothing is decided from now on: a request forwarded by another node is answered
        // `moved` (its sender asks the next owner), so every change made so far is in the final
        // flush. Deciding during the flush would change state the flush had already taken.
        name: 'stop deciding',
        run: () => {
          for (const shard of runtime.shards) if (shard.status === 'owned') shard.status = 'not_owned';
        },
      },
      {
        name: 'final flush',
        run: async () => {
          await writeBehind.settle();
          try {
            // Every actor, with every use not yet written, and quarantined rows whatever their back-off.
            const { flushed, unwritten } = await writeBehind.flushShards(runtime.shards, { ignoreBackoff: true });
            log.info(flushed, 'final flush');
            if (unwritten.size > 0) log.error({ shards: [...unwritten.keys()] }, 'final flush: the database refused some actors’ state');
          } catch (error) {
            log.error({ err: error, unwritten: runtime.unwrittenCount }, 'final flush failed');
          }
        },
      },
      {
        // A shard released with an actor whose state is not written loses that actor's usage
        // since its last written row. That is no clean release: the step fails, naming the
        // shards and actors, and the process exits 1.
        name: 'release the shards',
        run: () => {
          const unwritten = runtime.unwrittenIn(runtime.shards);
          for (const shard of runtime.shards) runtime.releaseShard(shard);
          if (unwritten.size > 0) throw new UnwrittenShardsError(unwritten);
        },
      },
      { name: 'stop forwarding', run: () => cluster?.forwarder.close() },
      // Only now, with everything written: the others take this node's shards at once.
      { name: 'leave the cluster', run: () => cluster?.node.stop(), tolerated: 'leaving the cluster failed; its shards move after a lease' },
      { name: 'close the database', run: () => database.close() },
      { name: 'close the replica', run: () => replica?.close() },
    ];
  }

  private shardLost(shard: Shard, newerEpoch: number | null): void {
    // The fence check logs what it found in one line; a load or a write, shard by shard.
    if (this.checking !== null) return;
    this.log.warn(
      { shard: shard.index, epoch: shard.epoch, newerEpoch },
      'the epoch fence shows another node owns this shard: no longer serving it (is a second node running on this database?)',
    );
    // Whoever claimed this shard may well have claimed others: look at all of them now.
    const parts = this.parts;
    if (this.ready && parts !== null) void this.checkFences(parts.store).catch((error: unknown) => this.log.error({ err: error }, 'fence check failed'));
  }

  private lostShards(): number[] {
    return this.runtime.shards.filter((shard) => shard.status === 'lost').map((shard) => shard.index);
  }

  /** Gives up every served shard whose fence epoch has moved past this node's. */
  private checkFences(store: Store): Promise<void> {
    this.checking ??= (async () => {
      try {
        const lost = this.runtime.checkFences(await store.fenceEpochs());
        if (lost > 0) {
          this.log.warn(
            { lost, served: this.servedShards() },
            'fence check: the epoch fence shows another node owns these shards: no longer serving them (is a second node running on this database?)',
          );
        }
      } finally {
        this.checking = null;
      }
    })();
    return this.checking;
  }

  private servedShards(): number {
    let served = 0;
    for (const shard of this.runtime.shards) if (shard.serving) served++;
    return served;
  }

  /**
   * Ready when this node can take requests: it accepts (not starting, not shutting down), its
   * database answers, and in a cluster its lease is valid and NATS connected. A cluster node
   * routes what it does not own, so shards moving, being claimed or briefly without an owner
   * do not make it unready: that is reported under `observed`, not in the status. A single
   * node is its own owner: it is ready only while it serves every shard.
   * Details never carry database error text: the probe needs no credentials. The log has it.
   */
  private async health(): Promise<HealthReport> {
    const checks: HealthReport['checks'] = {};
    checks.accepting = { ok: this.ready, ...(this.ready ? {} : { detail: 'starting or shutting down' }) };
    checks.database = await this.databaseCheck();
    const cluster = this.parts?.cluster;
    if (cluster) {
      checks.cluster = cluster.node.readiness();
      return { ready: Object.values(checks).every((check) => check.ok), checks, observed: { shards: cluster.node.health() } };
    } else {
      const served = this.servedShards();
      const lostCount = this.lostShards().length;
      const lost = lostCount > 0 ? `; ${lostCount} lost to another node (see /v1/admin/cluster)` : '';
      checks.shards = { ok: served === SHARD_COUNT, detail: `${served}/${SHARD_COUNT} served${lost}` };
    }
    return { ready: Object.values(checks).every((check) => check.ok), checks };
  }

  private async databaseCheck(): Promise<{ ok: boolean; detail?: string }> {
    const database = this.database;
    if (database === null) return { ok: false, detail: 'closed' };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), DATABASE_CHECK_MS);
    });
    try {
      const answer = await Promise.race([database.sql`select 1`.then(() => 'ok' as const), timeout]);
      return answer === 'ok' ? { ok: true } : { ok: false, detail: `no answer within ${DATABASE_CHECK_MS} ms` };
    } catch (error) {
      this.log.debug({ err: error }, 'readiness: the database check failed');
      return { ok: false, detail: 'unreachable' };
    } finally {
      clearTimeout(timer);
    }
  }

  private clusterView() {
    const cluster = this.parts?.cluster;
    if (cluster) {
      const view = cluster.node.view();
      return { ...view, shards: { ...view.shards, lost: this.lostShards() } };
    }
    const served = this.servedShards();
    return {
      nodes: [{ id: this.config.nodeId, self: true, shards: served, status: this.ready ? 'serving' : 'stopping' }],
      shards: {
        count: SHARD_COUNT,
        by_node: { [this.config.nodeId]: served },
        moving: [],
        lost: this.lostShards(),
      },
    };
  }
}

/** `host:port` of each URL in a comma-separated list, without user, password or path. */
function urlHosts(urls: string): string {
  return urls
    .split(',')
    .map((raw) => {
      try {
        const url = new URL(raw.trim());
        // postgres://…?host=/run/postgresql: a Unix socket directory, no host in the authority.
        return url.host || url.searchParams.get('host') || 'localhost';
      } catch {
        return '?';
      }
    })
    .join(', ');
}

/** The shutdown released shards with actors whose state is not written: their usage since their last written row is lost. */
class UnwrittenShardsError extends Error {
  override readonly name = 'UnwrittenShardsError';
  readonly shards: number[];
  /** The entity keys, the first hundred. */
  readonly entities: string[];
  readonly count: number;
  constructor(unwritten: ReadonlyMap<number, readonly string[]>) {
    const entities = [...unwritten.values()].flat();
    super(`released ${unwritten.size} shard(s) with ${entities.length} actor(s) whose state is not written; their usage since their last written row is lost`);
    this.shards = [...unwritten.keys()];
    this.entities = entities.slice(0, 100);
    this.count = entities.length;
  }
}

/** `start()` ended early because `stop()` was called meanwhile. */
class StartAbortedError extends Error {
  override readonly name = 'StartAbortedError';
  constructor() {
    super('stopped while starting');
  }
}
