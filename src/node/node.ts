/**
 * One Tally process. `start` brings it up in dependency order; `stop` takes it down in the
 * written order — not ready → stop accepting → finish in-flight → flush → release shards →
 * close connections — so that no admitted request and no counted unit is lost.
 */
import type { Logger } from 'pino';
import { createHttpServer, type HealthReport, type HttpServer, SessionTokens } from '../http/index.js';
import { type Database, migrate, openDatabase, Store, WriteBehind } from '../persistence/index.js';
import { ActorRuntime, initHashing, LimiterService, SHARD_COUNT, TierRegistry, UserService } from '../shards/index.js';
import { Accounts } from './accounts.js';
import type { Config } from './config.js';
import { createLogger } from './logger.js';
import { Metrics } from './metrics.js';
import { LocalRouter } from './router.js';
import { loadOrCreateJwtSecret } from './secrets.js';
import { TierAdmin } from './tierAdmin.js';
import { VERSION } from './version.js';

const TIER_REFRESH_MS = 500;
const NEGATIVE_CACHE_TTL_MS = 5_000;

export class TallyNode {
  readonly log: Logger;
  readonly runtime: ActorRuntime;
  readonly tiers = new TierRegistry();
  readonly metrics: Metrics;
  private database: Database | null = null;
  private http: HttpServer | null = null;
  private writeBehind: WriteBehind | null = null;
  private timers: NodeJS.Timeout[] = [];
  private ready = false;
  private stopping: Promise<void> | null = null;
  /** The port HTTP listens on (useful when configured as 0). */
  port = 0;

  constructor(
    readonly config: Config,
    log?: Logger,
  ) {
    this.log = log ?? createLogger(config.logLevel, config.nodeId);
    this.runtime = new ActorRuntime({
      maxActors: config.maxActors,
      idleMs: config.actorIdleMs,
      negativeTtlMs: NEGATIVE_CACHE_TTL_MS,
      negativeMax: 100_000,
    });
    this.metrics = new Metrics({
      activeActors: () => this.runtime.size,
      dirtyActors: () => this.runtime.dirtyCount,
      ownedShards: () => this.runtime.shards.filter((shard) => shard.serving).length,
      requestsInFlight: () => this.http?.inFlight ?? 0,
    });
  }

  async start(): Promise<this> {
    const { config, log } = this;
    await initHashing();
    this.database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
    const { sql } = this.database;
    const { applied } = await migrate(sql);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    const store = new Store(sql);

    const tierAdmin = new TierAdmin(store, this.tiers);
    await tierAdmin.refresh();

    // A single node serves every shard, each under a freshly bumped epoch, so that any
    // write a previous process might still attempt is refused by the fence.
    const epochs = await store.claimShards([...Array(SHARD_COUNT).keys()], config.nodeId);
    for (const shard of this.runtime.shards) {
      shard.epoch = epochs.get(shard.index)!;
      shard.status = 'owned';
    }

    const users = new UserService(this.runtime, store, this.tiers);
    const limiters = new LimiterService(this.runtime, store, this.tiers);
    const router = new LocalRouter(users, limiters);
    const tokens = new SessionTokens(config.jwtSecret ?? (await loadOrCreateJwtSecret(config.dataDir)));
    const accounts = new Accounts(store, router, tokens, this.tiers, config.sessionTtlMs);

    this.writeBehind = new WriteBehind(this.runtime, store, this.metrics, log);
    this.every(config.flushIntervalMs, async () => {
      await this.writeBehind!.flush();
      this.runtime.sweep(Date.now());
    });
    this.every(TIER_REFRESH_MS, () => tierAdmin.refresh());

    this.http = createHttpServer(
      {
        router,
        accounts,
        tiers: tierAdmin,
        clock: Date.now,
        health: () => this.health(),
        cluster: () => this.clusterView(),
        metrics: async () => ({ contentType: this.metrics.contentType, text: await this.metrics.text() }),
      },
      {
        tokens,
        adminToken: config.adminToken,
        serviceToken: config.serviceToken,
        trustProxy: config.trustProxy,
        metrics: this.metrics,
        log,
        version: VERSION,
      },
    );
    this.port = await this.http.listen(config.httpHost, config.httpPort);
    this.ready = true;
    log.info({ port: this.port, database: this.database.kind, node: config.nodeId }, 'tally is serving');
    return this;
  }

  /** Graceful shutdown; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const { log } = this;
    this.ready = false;
    this.http?.stopAccepting();
    const left = (await this.http?.waitIdle(this.config.shutdownTimeoutMs)) ?? 0;
    if (left > 0) log.warn({ left }, 'shutting down with requests still in flight');
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    if (this.writeBehind !== null) {
      await this.writeBehind.settle();
      this.runtime.activityDueNow();
      try {
        log.info(await this.writeBehind.flush(), 'final flush');
      } catch (error) {
        log.error({ err: error, unwritten: this.runtime.dirtyCount }, 'final flush failed: usage since the last flush is lost');
      }
    }
    for (const shard of this.runtime.shards) {
      shard.status = 'not_owned';
      this.runtime.releaseShard(shard);
    }
    await this.database?.close();
    this.database = null;
    log.info('stopped');
  }

  private every(intervalMs: number, task: () => Promise<unknown>): void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      task()
        .catch((error: unknown) => this.log.error({ err: error }, 'periodic task failed'))
        .finally(() => {
          running = false;
        });
    }, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }

  private async health(): Promise<HealthReport> {
    const checks: HealthReport['checks'] = {};
    checks.accepting = { ok: this.ready, ...(this.ready ? {} : { detail: 'starting or shutting down' }) };
    try {
      if (this.database === null) throw new Error('closed');
      await this.database.sql`select 1`;
      checks.database = { ok: true };
    } catch (error) {
      checks.database = { ok: false, detail: (error as Error).message };
    }
    const owned = this.runtime.shards.filter((shard) => shard.serving).length;
    checks.shards = { ok: owned === SHARD_COUNT, detail: `${owned}/${SHARD_COUNT} served` };
    const lastFlush = this.writeBehind?.lastError;
    checks.write_behind = lastFlush === null || lastFlush === undefined ? { ok: true } : { ok: false, detail: lastFlush };
    return { ready: Object.values(checks).every((check) => check.ok), checks };
  }

  private clusterView() {
    const owned = this.runtime.shards.filter((shard) => shard.serving).length;
    return {
      nodes: [{ id: this.config.nodeId, self: true, shards: owned, status: this.ready ? 'serving' : 'stopping' }],
      shards: { count: SHARD_COUNT, by_node: { [this.config.nodeId]: owned }, moving: [] },
    };
  }
}
