/**
 * The write-behind loop: collects the actors changed since the last flush and writes their
 * state in one batched, epoch-fenced statement. An actor is marked clean only after its
 * row is durable; if the write fails, everything collected is retried by the next flush.
 * Flushes never overlap: a call during a flush waits for it and then runs its own.
 */
import type { Logger } from 'pino';
import type { ActorRuntime, PersistedState } from '../shards/index.js';

/** What the flusher reports; the node's Prometheus registry implements it. */
export interface FlushMetrics {
  flushes: { inc(labels: { result: 'ok' | 'error' }): void };
  flushedRows: { inc(value: number): void };
  fencedRows: { inc(value: number): void };
  flushSeconds: { startTimer(): () => void };
}

export interface StateStore {
  writeStates(rows: PersistedState[]): Promise<{ written: number; fenced: string[] }>;
  touchActivity(sessions: { id: string; at: Date }[], keys: { id: string; at: Date }[]): Promise<void>;
}

export interface FlushResult {
  written: number;
  fenced: number;
  touched: number;
}

export class WriteBehind {
  private running: Promise<FlushResult> | null = null;
  lastError: string | null = null;

  constructor(
    private readonly runtime: ActorRuntime,
    private readonly store: StateStore,
    private readonly metrics: FlushMetrics,
    private readonly log: Logger,
  ) {}

  /** Writes everything dirty now, after any flush already running. */
  async flush(): Promise<FlushResult> {
    while (this.running !== null) await this.running.catch(() => undefined);
    this.running = this.flushDirtyActors();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  /** Waits for a flush in progress, if any. */
  async settle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  private async flushDirtyActors(): Promise<FlushResult> {
    const collection = this.runtime.collectDirty();
    const { rows, activity } = collection;
    const touched = activity.sessions.length + activity.keys.length;
    if (rows.length === 0 && touched === 0) return { written: 0, fenced: 0, touched: 0 };
    const stopTimer = this.metrics.flushSeconds.startTimer();
    try {
      const { written, fenced } = rows.length > 0 ? await this.store.writeStates(rows) : { written: 0, fenced: [] };
      if (touched > 0) await this.store.touchActivity(activity.sessions, activity.keys);
      collection.commit();
      // A newer owner holds these shards: our copies are stale and must not serve again.
      for (const entityKey of fenced) this.runtime.dropFenced(entityKey);
      if (fenced.length > 0) this.log.warn({ fenced: fenced.length }, 'write-behind rows refused by the epoch fence');
      this.metrics.flushes.inc({ result: 'ok' });
      this.metrics.flushedRows.inc(written);
      this.metrics.fencedRows.inc(fenced.length);
      this.lastError = null;
      return { written, fenced: fenced.length, touched };
    } catch (error) {
      collection.fail();
      this.metrics.flushes.inc({ result: 'error' });
      this.lastError = (error as Error).message;
      this.log.error({ err: error, rows: rows.length }, 'write-behind flush failed; will retry');
      throw error;
    } finally {
      stopTimer();
    }
  }
}
