/**
 * Prometheus metrics, all prefixed `tally_`. Labels are routes, statuses and outcomes, never
 * user ids or keys: a label per user would grow without bound.
 *
 * Requests are the hot path: their counts and durations are aggregated by `RequestStats`
 * and read by the registry at scrape time.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { HttpMetrics } from '../http/index.js';
import { RequestStats } from './requestStats.js';

export class Metrics implements HttpMetrics {
  readonly registry = new Registry();
  private readonly requests = new RequestStats();
  readonly degraded: Counter<'operation'>;
  readonly flushes: Counter<'result'>;
  readonly flushedRows: Counter;
  readonly fencedRows: Counter;
  readonly flushSeconds: Histogram;

  constructor(gauges: { activeActors: () => number; dirtyActors: () => number; ownedShards: () => number; requestsInFlight: () => number }) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry, prefix: 'tally_process_' });
    this.requests.register(registry);
    this.degraded = new Counter({
      name: 'tally_quota_degraded_total',
      help: 'Requests allowed without their owner (fail_open tiers)',
      labelNames: ['operation'],
      registers: [registry],
    });
    this.flushes = new Counter({ name: 'tally_flush_total', help: 'Write-behind flushes', labelNames: ['result'], registers: [registry] });
    this.flushedRows = new Counter({ name: 'tally_flush_rows_total', help: 'Actor states written behind', registers: [registry] });
    this.fencedRows = new Counter({ name: 'tally_flush_fenced_rows_total', help: 'Actor states refused by the epoch fence', registers: [registry] });
    this.flushSeconds = new Histogram({
      name: 'tally_flush_duration_seconds',
      help: 'Duration of one write-behind flush',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    });
    new Gauge({
      name: 'tally_actors_active',
      help: 'Actors in memory',
      registers: [registry],
      collect() {
        this.set(gauges.activeActors());
      },
    });
    new Gauge({
      name: 'tally_actors_dirty',
      help: 'Actors waiting for the write-behind flush',
      registers: [registry],
      collect() {
        this.set(gauges.dirtyActors());
      },
    });
    new Gauge({
      name: 'tally_http_requests_in_flight',
      help: 'HTTP requests received and not yet answered',
      registers: [registry],
      collect() {
        this.set(gauges.requestsInFlight());
      },
    });
    new Gauge({
      name: 'tally_shards_owned',
      help: 'Shards this node serves',
      registers: [registry],
      collect() {
        this.set(gauges.ownedShards());
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
