/**
 * The cluster's JetStream KV buckets (members, shard map, coordinator), opened or created
 * with one history entry. On a NATS cluster of three servers or more they are replicated
 * three ways, so that losing one server loses no entry and stops no watch; on a single
 * server (or two, where a replica could never form a majority) they have one replica.
 */
import { type KV, type KvEntry, Kvm, type RoKV } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { RequestTimeoutError } from './errors.js';

function bucketReplicas(nc: NatsConnection): number {
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
 * heartbeats, so the watch would be silent for ten seconds or more. Every `probeMs` this
 * reads the bucket's last revision. Behind it, the probe looks again a moment later: still
 * behind with nothing delivered in between, the watch is made anew from the revision after
 * the last one it delivered.
 *
 * Making it anew can fail for a while after a server died: the cluster may place the new
 * consumer on the dead server, and its create request is then never answered. So each try
 * gets `NATS_ANSWER_MS`, and tries follow one another until one succeeds.
 */
/** How often a bucket watch compares what it delivered with the bucket. */
export const WATCH_PROBE_MS = 1000;
/** How soon a probe that found the watch behind looks again. */
const RECHECK_MS = 250;
/** How long a probe waits for JetStream: the bucket's status, or one try at making the watch anew. */
const NATS_ANSWER_MS = 1500;

export class BucketWatch {
  private resolveLoaded!: () => void;
  /**
   * Resolves once the watch has delivered every entry stored when it started: the entry with
   * nothing pending after it, or at once for an empty bucket (which sends nothing).
   */
  readonly loaded = new Promise<void>((resolve) => {
    this.resolveLoaded = resolve;
  });
  private last = 0;
  private iterator: { stop(): void } | null = null;
  /** What the watch had delivered when a probe first found it behind, and when. */
  private behind: { delivered: number; since: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private probing = false;

  private constructor(
    private readonly kv: RoKV,
    private readonly onEntry: (entry: KvEntry) => void,
    private readonly options: { name: string; log: Logger; probeMs: number },
  ) {}

  /** Starts the watch (from the bucket's current values) and its probes. */
  static async start(kv: RoKV, onEntry: (entry: KvEntry) => void, options: { name: string; log: Logger; probeMs: number }): Promise<BucketWatch> {
    const watch = new BucketWatch(kv, onEntry, options);
    const empty = (await kv.status()).values === 0;
    watch.follow(await kv.watch());
    if (empty) watch.resolveLoaded();
    watch.timer = setInterval(() => void watch.probe(), options.probeMs);
    watch.timer.unref();
    return watch;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.iterator?.stop();
  }

  private follow(updates: QueuedIterator<KvEntry>): void {
    this.iterator = updates;
    void (async () => {
      for await (const entry of updates) {
        if (entry.revision > this.last) this.last = entry.revision;
        this.onEntry(entry);
        if (entry.delta === 0) this.resolveLoaded();
      }
    })().catch((error: unknown) => {
      if (!this.stopped) this.options.log.warn({ err: error, bucket: this.options.name }, 'a bucket watch failed; the next probe makes it anew');
    });
  }

  private async probe(): Promise<void> {
    if (this.probing || this.stopped) return;
    this.probing = true;
    try {
      const lastInBucket = (await within(this.kv.status(), NATS_ANSWER_MS, 'bucket status')).streamInfo.state.last_seq;
      if (lastInBucket <= this.last) {
        this.behind = null;
        return;
      }
      if (this.behind?.delivered !== this.last) {
        this.behind = { delivered: this.last, since: performance.now() };
        setTimeout(() => void this.probe(), RECHECK_MS).unref();
        return;
      }
      if (performance.now() - this.behind.since < RECHECK_MS) return;
      this.options.log.warn({ bucket: this.options.name, delivered: this.last, inBucket: lastInBucket }, 'a bucket watch fell silent; making it anew');
      this.behind = null;
      await this.reopen();
    } catch {
      // NATS away: nothing to compare against; the next probe tries again.
    } finally {
      this.probing = false;
    }
  }

  /** Makes the watch anew from the revision after the last it delivered, trying until it is made or stopped. */
  private async reopen(): Promise<void> {
    this.iterator?.stop();
    this.iterator = null;
    for (let attempt = 1; !this.stopped; attempt++) {
      try {
        const updates = await within(this.kv.watch({ resumeFromRevision: this.last + 1 }), NATS_ANSWER_MS, 'making the watch', (late) => late.stop());
        if (this.stopped) updates.stop();
        else this.follow(updates);
        return;
      } catch (error) {
        if (attempt === 1 || attempt % 10 === 0)
          this.options.log.warn({ bucket: this.options.name, attempt, err: error }, 'could not make a bucket watch anew; trying again');
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * attempt, this.options.probeMs)));
      }
    }
  }
}

/** `promise`, given up after `timeoutMs`; what it yields after that goes to `onLate`. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string, onLate: (late: T) => void = () => {}): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RequestTimeoutError(what, timeoutMs)), timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } catch (error) {
    promise.then(onLate, () => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
