/**
 * Prometheus metrics: Tally's own are prefixed `tally_`; the process and Node.js ones keep
 * their standard names. Labels are routes, statuses and outcomes, never
 * user ids or keys: a label per user would grow without bound.
 *
 * Requests are the hot path: their counts and durations are aggregated by `RequestStats`
 * and read by the registry at scrape time. So are the gauges and the counters other parts
 * keep as plain numbers (the runtime's, the store's): they are read when scraped.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { HttpMetrics } from '../http/index.js';
import type { FlushMetrics, ReplicaStats } from '../persistence/index.js';
import type { FailOpenMetrics } from './failOpen.js';
import { RequestStats } from './requestStats.js';

/** Values read at scrape time. */
export interface MetricSources {
  activeActors(): number;
  dirtyActors(): number;
  ownedShards(): number;
  lostShards(): number;
  requestsInFlight(): number;
  quarantinedRows(): number;
  /** Loads from the database so far, by kind of actor. */
  storeLoads(): { user: number; state: number };
  /** Activations refused because the node was full of actors it could not drop. */
  refusedAtCapacity(): number;
  /** Actors dropped so far: least recently used at the cap, and idle. */
  evicted(): number;
  passivated(): number;
  /** Cluster mode's counts so far (all 0 on a single node). */
  cluster(): ClusterCounts;
  /** The Redis replica's counts, and whether it answers (absent without REDIS_URL). */
  replica?: () => { stats: ReplicaStats; up: boolean };
}

interface ClusterCounts {
  forwardBatches: number;
  forwardedItems: number;
  forwardFailures: number;
  forwardRefused: number;
  /** Batches and bucket entries refused for want of a valid MAC, by kind. */
  unsealed: Readonly<Record<string, number>>;
  shardsClaimed: number;
  shardsHandedOff: number;
  /** Now: shards the map gives this node, and shards without an owner in the map. */
  shardsAssigned: number;
  shardsUnassigned: number;
  leaseLosses: number;
}

export class Metrics implements HttpMetrics, FlushMetrics, FailOpenMetrics {
  readonly registry = new Registry();
  private readonly requests = new RequestStats();
  readonly degraded: Counter<'operation'>;
  readonly flushes: Counter<'result'>;
  readonly flushedRows: Counter;
  readonly fencedRows: Counter;
  readonly quarantinedRows: Counter;
  readonly flushSeconds: Histogram;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    // Under their standard names (process_*, nodejs_*), which stock Node.js dashboards expect.
    collectDefaultMetrics({ register: this.registry });
    this.requests.register(this.registry);
    this.degraded = new Counter({
      name: 'tally_quota_degraded_total',
      help: 'Requests allowed without their owner (fail_open tiers)',
      labelNames: ['operation'],
      registers,
    });
    this.flushes = new Counter({ name: 'tally_flush_total', help: 'Write-behind flushes', labelNames: ['result'], registers });
    this.flushedRows = new Counter({ name: 'tally_flush_rows_total', help: 'Actor states written behind', registers });
    this.fencedRows = new Counter({ name: 'tally_flush_fenced_rows_total', help: 'Actor states refused by the epoch fence', registers });
    this.quarantinedRows = new Counter({
      name: 'tally_flush_rows_quarantined_total',
      help: 'Actor states the database refused (kept in memory and retried with back-off), per attempt',
      registers,
    });
    this.flushSeconds = new Histogram({
      name: 'tally_flush_duration_seconds',
      help: 'Duration of one write-behind flush',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    gauge('tally_actors_active', 'Actors in memory', sources.activeActors);
    gauge('tally_actors_dirty', 'Actors with changes not yet written: queued, or in a flush in progress', sources.dirtyActors);
    gauge('tally_flush_quarantined_rows', 'Actor states held in quarantine now', sources.quarantinedRows);
    gauge('tally_http_requests_in_flight', 'HTTP requests received and not yet answered', sources.requestsInFlight);
    gauge('tally_shards_owned', 'Shards this node serves', sources.ownedShards);
    gauge('tally_shards_lost', 'Shards this node gave up because the fence showed another owner', sources.lostShards);
    new Counter({
      name: 'tally_store_loads_total',
      help: 'Actors loaded from the database, by kind',
      labelNames: ['kind'],
      registers,
      collect() {
        const loads = sources.storeLoads();
        this.reset();
        this.inc({ kind: 'user' }, loads.user);
        this.inc({ kind: 'limiter' }, loads.state);
      },
    });
    const counter = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    gauge(
      'tally_cluster_shards_assigned',
      'Cluster: shards the map gives this node (tally_shards_owned: those it serves)',
      () => sources.cluster().shardsAssigned,
    );
    gauge('tally_cluster_shards_unassigned', 'Cluster: shards without an owner in the map, as this node sees it', () => sources.cluster().shardsUnassigned);
    const cluster = (name: string, help: string, field: Exclude<keyof ClusterCounts, 'unsealed' | 'shardsAssigned' | 'shardsUnassigned'>) =>
      counter(name, help, () => sources.cluster()[field]);
    cluster('tally_cluster_forward_batches_total', 'Batches of requests forwarded to other nodes', 'forwardBatches');
    cluster('tally_cluster_forwarded_total', 'Requests forwarded to their owner on another node', 'forwardedItems');
    cluster('tally_cluster_forward_failures_total', 'Forwarded batches that got no answer (owner unreachable, deadline passed)', 'forwardFailures');
    cluster('tally_cluster_forward_refused_total', 'Batches received that were not answered: unreadable, of another version, or too large', 'forwardRefused');
    new Counter({
      name: 'tally_cluster_unsealed_total',
      help: 'Forwarded batches (kind="batch") and bucket entries (kind=the bucket) ignored for want of a valid MAC: not from a node holding TALLY_KEY_SECRET',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const [kind, count] of Object.entries(sources.cluster().unsealed)) this.inc({ kind }, count);
      },
    });
    cluster('tally_cluster_shards_claimed_total', 'Shards this node claimed in the fence as the map gave them', 'shardsClaimed');
    cluster('tally_cluster_shards_handed_off_total', 'Shards this node flushed and handed to another node', 'shardsHandedOff');
    cluster('tally_cluster_lease_losses_total', 'Times this node found its member entry taken over and gave up every shard', 'leaseLosses');
    // The replica's series exist only with REDIS_URL: without it, a dashboard shows no replica, not a dead one.
    const replicaSource = sources.replica;
    if (replicaSource !== undefined) {
      const replica = () => replicaSource().stats;
      gauge('tally_replica_up', 'Whether the Redis replica answered its last push or read (1) or not (0)', () => (replicaSource().up ? 1 : 0));
      counter('tally_replica_pushes_total', 'Pushes of changed actors to the Redis replica', () => replica().pushes);
      counter('tally_replica_push_failures_total', 'Pushes to the Redis replica that failed (Redis down or slow)', () => replica().pushFailures);
      counter('tally_replica_snapshots_total', 'Actor snapshots the Redis replica took', () => replica().snapshotsPushed);
      counter(
        'tally_replica_read_failures_total',
        'Activations that could not read the Redis replica in time and used Postgres alone',
        () => replica().readFailures,
      );
      new Counter({
        name: 'tally_replica_activations_total',
        help: 'Activations with the Redis replica on, by the copy they started from: redis, postgres, or none (a new actor)',
        labelNames: ['source'],
        registers,
        collect() {
          const { chosen } = replica();
          this.reset();
          for (const source of ['redis', 'postgres', 'none'] as const) this.inc({ source }, chosen[source]);
        },
      });
    }
    counter('tally_actors_evicted_total', 'Clean actors dropped at TALLY_MAX_ACTORS, least recently used first', sources.evicted);
    counter('tally_actors_passivated_total', 'Actors dropped after TALLY_ACTOR_IDLE_MS unused', sources.passivated);
    new Counter({
      name: 'tally_actors_refused_total',
      help: 'Activations refused because the node was full of actors whose state is not yet written',
      registers,
      collect() {
        this.reset();
        this.inc(sources.refusedAtCapacity());
      },
    });
  }

  observe(route: string, status: number, durationMs: number): void {
    this.requests.observe(route, status, durationMs);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
