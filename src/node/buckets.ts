/**
 * The cluster's JetStream KV buckets (members, shard map, coordinator), opened or created
 * with one history entry. On a NATS cluster of three servers or more they are replicated
 * three ways, so that losing one server loses no entry and stops no watch; on a single
 * server (or two, where a replica could never form a majority) they have one replica.
 */
import { type KV, type KvEntry, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';

export function bucketReplicas(nc: NatsConnection): number {
  const info = nc.info;
  if (info?.cluster === undefined) return 1;
  // Every server of the cluster that advertises itself to clients, this one included.
  const servers = new Set(info.connect_urls ?? []).size;
  return servers >= 3 ? 3 : 1;
}

/** How long opening a bucket keeps trying while JetStream does not answer (a new cluster elects its leaders). */
const OPEN_TIMEOUT_MS = 30_000;

export async function openBucket(nc: NatsConnection, name: string, options: { ttlMs?: number; log?: Logger } = {}): Promise<KV> {
  const until = performance.now() + OPEN_TIMEOUT_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await new Kvm(nc).create(name, {
        history: 1,
        replicas: bucketReplicas(nc),
        ...(options.ttlMs === undefined ? {} : { ttl: options.ttlMs }),
      });
    } catch (error) {
      if (performance.now() > until) throw error;
      if (attempt === 1) options.log?.warn({ bucket: name, err: error }, 'JetStream does not answer yet; retrying');
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/**
 * A watch of a whole bucket that survives losing its consumer. The watch's ordered consumer
 * lives on one NATS server; when that server dies, nats.js notices only after two missed idle
 * heartbeats of 30 s, so the watch would be silent for about a minute. Every `probeMs` this
 * reads the bucket's last revision: behind it twice in a row, with nothing delivered in
 * between, the watch is made anew from the revision after the last one it delivered.
 */
/** How often a bucket watch compares what it delivered with the bucket. */
export const WATCH_PROBE_MS = 1000;

export class BucketWatch {
  private last = 0;
  private iterator: { stop(): void } | null = null;
  private behind: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private probing = false;

  private constructor(
    private readonly kv: KV,
    private readonly onEntry: (entry: KvEntry) => void,
    private readonly options: { name: string; log: Logger; probeMs: number },
  ) {}

  /** Starts the watch (from the bucket's current values) and its probes. */
  static async start(kv: KV, onEntry: (entry: KvEntry) => void, options: { name: string; log: Logger; probeMs: number }): Promise<BucketWatch> {
    const watch = new BucketWatch(kv, onEntry, options);
    await watch.open();
    watch.timer = setInterval(() => void watch.probe(), options.probeMs);
    watch.timer.unref();
    return watch;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.iterator?.stop();
  }

  private async open(): Promise<void> {
    const updates = await this.kv.watch(this.last > 0 ? { resumeFromRevision: this.last + 1 } : {});
    this.iterator = updates;
    void (async () => {
      for await (const entry of updates) {
        if (entry.revision > this.last) this.last = entry.revision;
        this.onEntry(entry);
      }
    })().catch((error: unknown) => {
      if (!this.stopped) this.options.log.warn({ err: error, bucket: this.options.name }, 'a bucket watch failed; the next probe makes it anew');
    });
  }

  private async probe(): Promise<void> {
    if (this.probing || this.stopped) return;
    this.probing = true;
    try {
      const lastInBucket = (await this.kv.status()).streamInfo.state.last_seq;
      if (lastInBucket <= this.last) {
        this.behind = null;
        return;
      }
      if (this.behind !== this.last) {
        this.behind = this.last;
        return;
      }
      this.options.log.warn({ bucket: this.options.name, delivered: this.last, inBucket: lastInBucket }, 'a bucket watch fell silent; making it anew');
      this.iterator?.stop();
      this.behind = null;
      await this.open();
    } catch {
      // NATS away: nothing to compare against; the next probe tries again.
    } finally {
      this.probing = false;
    }
  }
}
