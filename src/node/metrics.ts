/**
 * Prometheus metrics, all prefixed `tally_`. Labels are routes, statuses and outcomes, never
 * user ids or keys: a label per user would grow without bound.
 *
 * Requests are the hot path: each one only appends to a small buffer, and the buffer is
 * applied to the prom-client counter and histogram when they are collected (at scrape
 * time, or when the buffer fills), so a request does not pay for label hashing and bucket
 * search.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HttpMetrics } from '../http/index.js';

/** Observations buffered between collections (a scrape every few seconds holds far fewer). */
const PENDING_MAX = 65_536;

export class Metrics implements HttpMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status'>;
  private readonly duration: Histogram<'route'>;
  private readonly requestChildren = new Map<string, Counter.Internal>();
  private readonly durationChildren = new Map<string, Histogram.Internal<'route'>>();
  private pendingRoutes: string[] = [];
  private pendingStatuses: number[] = [];
  private pendingSeconds: number[] = [];
  readonly quotaDecisions: Counter<'outcome'>;
  readonly degraded: Counter<'operation'>;
  readonly flushes: Counter<'result'>;
  readonly flushedRows: Counter;
  readonly fencedRows: Counter;
  readonly flushSeconds: Histogram;

  constructor(gauges: { activeActors: () => number; dirtyActors: () => number; ownedShards: () => number }) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry, prefix: 'tally_process_' });
    const applyPending = () => this.applyPending();
    this.requests = new Counter({
      name: 'tally_http_requests_total',
      help: 'HTTP requests answered',
      labelNames: ['route', 'status'],
      registers: [registry],
      collect: applyPending,
    });
    this.duration = new Histogram({
      name: 'tally_http_request_duration_seconds',
      help: 'Time from request to answer',
      labelNames: ['route'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2],
      registers: [registry],
      collect: applyPending,
    });
    this.quotaDecisions = new Counter({ name: 'tally_quota_decisions_total', help: 'Quota decisions by outcome', labelNames: ['outcome'], registers: [registry] });
    this.degraded = new Counter({ name: 'tally_quota_degraded_total', help: 'Requests allowed without their owner (fail_open tiers)', labelNames: ['operation'], registers: [registry] });
    this.flushes = new Counter({ name: 'tally_flush_total', help: 'Write-behind flushes', labelNames: ['result'], registers: [registry] });
    this.flushedRows = new Counter({ name: 'tally_flush_rows_total', help: 'Actor states written behind', registers: [registry] });
    this.fencedRows = new Counter({ name: 'tally_flush_fenced_rows_total', help: 'Actor states refused by the epoch fence', registers: [registry] });
    this.flushSeconds = new Histogram({ name: 'tally_flush_duration_seconds', help: 'Duration of one write-behind flush', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [registry] });
    new Gauge({ name: 'tally_actors_active', help: 'Actors in memory', registers: [registry], collect() { this.set(gauges.activeActors()); } });
    new Gauge({ name: 'tally_actors_dirty', help: 'Actors waiting for the write-behind flush', registers: [registry], collect() { this.set(gauges.dirtyActors()); } });
    new Gauge({ name: 'tally_shards_owned', help: 'Shards this node serves', registers: [registry], collect() { this.set(gauges.ownedShards()); } });
  }

  observe(route: string, status: number, durationMs: number): void {
    this.pendingRoutes.push(route);
    this.pendingStatuses.push(status);
    this.pendingSeconds.push(durationMs / 1000);
    if (this.pendingRoutes.length >= PENDING_MAX) this.applyPending();
  }

  private applyPending(): void {
    const routes = this.pendingRoutes;
    const statuses = this.pendingStatuses;
    const seconds = this.pendingSeconds;
    this.pendingRoutes = [];
    this.pendingStatuses = [];
    this.pendingSeconds = [];
    for (let i = 0; i < routes.length; i++) this.record(routes[i]!, statuses[i]!, seconds[i]!);
  }

  private record(route: string, status: number, seconds: number): void {
    const key = `${route} ${status}`;
    let counter = this.requestChildren.get(key);
    if (counter === undefined) {
      counter = this.requests.labels(route, String(status));
      this.requestChildren.set(key, counter);
    }
    counter.inc();
    let histogram = this.durationChildren.get(route);
    if (histogram === undefined) {
      histogram = this.duration.labels(route);
      this.durationChildren.set(route, histogram);
    }
    histogram.observe(seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
