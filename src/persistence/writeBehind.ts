/**
 * The write-behind loop: collects the actors changed since the last flush and writes their
 * state in batched, epoch-fenced statements. An actor is marked clean only after its row is
 * durable. Flushes never overlap: a call during a flush waits for it and then runs its own.
 *
 * What can go wrong, and what happens then:
 * - The database cannot be reached (or fails the same way for any row: a missing table, a
 *   permission): the flush fails, every row not yet written is retried by the next one, and
 *   the actors stay in memory. Nothing is lost while the node runs.
 * - One row cannot be written (its content is refused: class 22, 23 or 54): the batch is
 *   split until the row is alone, the rest is written, and the row is quarantined — kept in
 *   memory, logged by entity key, counted, and retried with exponential back-off. One bad
 *   row never blocks anyone else's flush. No value an actor can hold makes its row refused
 *   (encoding is total: actorState.ts); what is left is the database's own refusal (a
 *   trigger, a full disk reported as a data exception).
 * - A shard is handed off, or the node stops: `flushShards` writes its actors and names those
 *   still unwritten. Such a shard is not handed off, and a shutdown that releases it reports
 *   it: those actors' usage exists nowhere else.
 * - A row is refused by the fence (its shard's epoch moved on): another node owns the shard,
 *   and the runtime gives the whole shard up (runtime.ts).
 *
 * A flush goes through the dirty actors in slices of `maxRows`, one statement each (more when
 * the slice's state is over `maxBytes`, so that no user's state can push a statement past
 * what Postgres accepts in one parameter), collects each slice in parts, and lets the event
 * loop run between parts and between slices.
 */
import type { Logger } from 'pino';
import { type ActivityTouches, type ActorRuntime, coalesced, type DirtyCollection, type PersistedState, type Shard } from '../shards/index.js';
import { type EncodedStateRow, encodeStateRow, packedBytesAtMost } from './actorState.js';
import { isRowError, SQLSTATE, sqlState } from './errors.js';
import type { ActivityTouch } from './rows.js';

export interface StateStore {
  writeStates(rows: readonly EncodedStateRow[]): Promise<{ written: number; fenced: string[] }>;
  touchActivity(sessions: ActivityTouch[], keys: ActivityTouch[]): Promise<void>;
}

/** What the flusher reports; the node's Prometheus registry implements it. */
export interface FlushMetrics {
  flushes: { inc(labels: { result: 'ok' | 'error' }): void };
  flushedRows: { inc(value: number): void };
  fencedRows: { inc(value: number): void };
  quarantinedRows: { inc(value: number): void };
  flushSeconds: { startTimer(): () => void };
}

export interface WriteBehindOptions {
  /** Rows per statement. */
  maxRows: number;
  /** Bytes of state per statement (a row longer than this goes alone). */
  maxBytes: number;
  /** First retry of a quarantined row after this long, then twice as long each time… */
  retryBaseMs: number;
  /** …up to this. */
  retryMaxMs: number;
  clock: () => number;
}

const WRITE_BEHIND_DEFAULTS: WriteBehindOptions = {
  maxRows: 1000,
  maxBytes: 1 << 20,
  retryBaseMs: 1000,
  retryMaxMs: 60_000,
  clock: Date.now,
};

export interface FlushResult {
  written: number;
  fenced: number;
  /** Rows refused this time and kept in quarantine. */
  quarantined: number;
  /** Quarantined rows not tried this time (their back-off has not run out). */
  deferred: number;
  touched: number;
}

interface Pending {
  /** Index into the slice's rows (those of all its parts, in order). */
  index: number;
  row: EncodedStateRow;
  /** About what the row weighs in the statement (`packedBytesAtMost`, and its integers), for cutting batches. */
  bytes: number;
}

interface Quarantined {
  attempts: number;
  retryAt: number;
}

/** What one slice of a flush found, filled in as its statements return. */
interface Tally {
  /** The whole flush's counts. */
  result: FlushResult;
  /** Indexes into the slice's rows (of all its parts, in order) to try again. */
  retry: Set<number>;
  lostShards: Set<number>;
}

const NO_BYTES = new Uint8Array(0);

/** Actors a slice collects between two turns of the event loop (flushSlice). */
const COLLECT_PART = 250;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Rows whose state had to be mended to be stored are logged at most this often. */
const MENDED_LOG_MS = 60_000;

export class WriteBehind {
  /**
   * One flush at a time; every flush asked for while one runs shares the one after it, which
   * begins after them and so writes what each found dirty (and fails them all if it fails).
   * A node handing off 32 shards at once makes two or three flushes, not 32 in a row, each of
   * which the last shard would wait for. Never two at once: two flushes with overlapping
   * keys could deadlock each other in Postgres.
   */
  private readonly flushes = coalesced(() => {
    const ignoreBackoff = this.nextIgnoresBackoff;
    this.nextIgnoresBackoff = false;
    return this.flushDirtyActors(ignoreBackoff);
  });
  /** Whether the next flush to start tries quarantined rows whatever their back-off. */
  private nextIgnoresBackoff = false;
  private readonly quarantine = new Map<string, Quarantined>();
  private readonly options: WriteBehindOptions;
  /** Rows written mended since the last line that said so, and when that line was. */
  private mended = { rows: 0, loggedAt: Number.NEGATIVE_INFINITY };

  constructor(
    private readonly runtime: ActorRuntime,
    private readonly store: StateStore,
    private readonly metrics: FlushMetrics,
    private readonly log: Logger,
    options: Partial<WriteBehindOptions> = {},
  ) {
    this.options = { ...WRITE_BEHIND_DEFAULTS, ...options };
  }

  /** Rows held in quarantine now (refused by the database, retried with back-off). */
  get quarantined(): number {
    return this.quarantine.size;
  }

  /**
   * Writes everything dirty now, after any flush already running. `ignoreBackoff` tries the
   * quarantined rows too (the last flush before the node stops).
   */
  async flush(options: { ignoreBackoff?: boolean } = {}): Promise<FlushResult> {
    return this.flushNow(options.ignoreBackoff === true);
  }

  /**
   * Before `shards` leave this node (a hand-off, the shutdown): writes everything dirty now,
   * as `flush` does, with every use of their actors not yet written, and returns, by shard,
   * their actors still unwritten (their rows were refused, now or before and their back-off
   * has not run out). A shard is handed over, or released cleanly, only when it has none.
   * Throws as `flush` does when the database fails.
   */
  async flushShards(shards: Iterable<Shard>, options: { ignoreBackoff?: boolean } = {}): Promise<{ flushed: FlushResult; unwritten: Map<number, string[]> }> {
    const leaving = [...shards];
    // Their actors are about to leave memory: every use is written now, not within a minute.
    for (const shard of leaving) for (const actor of shard.actors()) actor.activityDueNow();
    const flushed = await this.flushNow(options.ignoreBackoff === true);
    return { flushed, unwritten: this.runtime.unwrittenIn(leaving) };
  }

  /** Runs a flush now, or joins the one queued behind the flush in progress (`flushes`). */
  private flushNow(ignoreBackoff: boolean): Promise<FlushResult> {
    if (ignoreBackoff) this.nextIgnoresBackoff = true;
    return this.flushes();
  }

  /** Waits for the flush in progress and the one queued behind it, if any. */
  settle(): Promise<void> {
    // Their outcome belongs to whoever asked for them.
    return this.flushes.idle();
  }

  /**
   * Writes what was queued when the flush began, one slice of at most `maxRows` actors at a
   * time: a slice is collected and serialised (in parts: flushSlice) and sent, and the next is
   * collected only once its statement has returned, so no flush holds the event loop for
   * longer than a part and the statement's making take, however many actors are dirty. Actors
   * made dirty meanwhile wait for the next flush. A failure stops at the slice it happened in: the rest stays queued.
   */
  private async flushDirtyActors(ignoreBackoff: boolean): Promise<FlushResult> {
    const now = this.options.clock();
    this.forgetGone();
    const result: FlushResult = { written: 0, fenced: 0, quarantined: 0, deferred: 0, touched: 0 };
    const lostShards = new Set<number>();
    const stopTimer = this.metrics.flushSeconds.startTimer();
    let failure: unknown = null;
    let slices = 0;
    try {
      // At least one slice, for activity touches left over from a failed flush.
      for (let left = this.runtime.dirtyCount; slices === 0 || left > 0; left -= this.options.maxRows) {
        if (slices++ > 0) await yieldToEventLoop();
        const tally: Tally = { result, retry: new Set(), lostShards };
        failure = await this.flushSlice(Math.min(left, this.options.maxRows), tally, now, ignoreBackoff);
        if (failure !== null) break;
      }
    } finally {
      stopTimer();
    }
    if (lostShards.size > 0) {
      this.log.warn({ shards: [...lostShards], rows: result.fenced }, 'write-behind rows refused by the epoch fence: another node owns these shards');
    }
    this.metrics.flushedRows.inc(result.written);
    this.metrics.fencedRows.inc(result.fenced);
    this.metrics.quarantinedRows.inc(result.quarantined);
    this.metrics.flushes.inc({ result: failure === null ? 'ok' : 'error' });
    this.logMended();
    if (failure !== null) throw failure;
    return result;
  }

  /**
   * Collects, writes and settles the next `limit` queued actors; returns the database's error,
   * if any. They are collected in parts of COLLECT_PART, letting the event loop run between
   * parts, and written in one statement: collecting and serialising 1,000 rows held the loop
   * for 15–23 ms on two shared cores (the warm phase's worst delays at 100,000 users), where
   * slices of 500 rows cost Postgres 17 % more per row.
   */
  private async flushSlice(limit: number, tally: Tally, now: number, ignoreBackoff: boolean): Promise<unknown> {
    const pending: Pending[] = [];
    const parts: DirtyCollection[] = [];
    let rows = 0;
    try {
      for (let taken = 0; parts.length === 0 || taken < limit; taken += COLLECT_PART) {
        if (parts.length > 0) await yieldToEventLoop();
        // Each row is serialised as it is collected (see collectDirty); its index is the slice's.
        const first = rows;
        const part = this.runtime.collectDirty(now, Math.min(COLLECT_PART, limit - taken), (row, index) =>
          this.encode(row, first + index, pending, tally, now, ignoreBackoff),
        );
        parts.push(part);
        rows += part.rows.length;
      }
    } catch (error) {
      // A part that failed to collect (a bug elsewhere): the parts taken so far go back to the
      // queue, with their last-use times, rather than be lost off it.
      for (const part of parts) part.finish({ retry: new Set(part.rows.keys()), activityFailed: true });
      throw error;
    }
    const activity: ActivityTouches =
      parts.length === 1
        ? parts[0]!.activity
        : { sessions: parts.flatMap((part) => part.activity.sessions), keys: parts.flatMap((part) => part.activity.keys) };
    const touched = activity.sessions.length + activity.keys.length;
    if (rows === 0 && touched === 0) return null;

    let failure: unknown = null;
    for (const batch of this.batches(pending)) {
      if (failure === null) {
        try {
          await this.writeBatch(batch, tally, now);
          continue;
        } catch (error) {
          failure = error;
        }
      }
      for (const { index } of batch) tally.retry.add(index);
    }
    let activityFailed = false;
    if (touched > 0) {
      if (failure !== null) {
        activityFailed = true;
      } else {
        try {
          await this.touch(activity);
          tally.result.touched += touched;
        } catch (error) {
          if (isRowError(error)) {
            // Last-use times are our own ids and times: a refusal is a bug, not a reason to
            // fail every later flush. They are dropped (the next use writes a newer one).
            this.log.error(
              { err: error, sessions: activity.sessions.length, keys: activity.keys.length },
              'the database refused last-use times; they are dropped',
            );
          } else {
            activityFailed = true;
            failure = error;
          }
        }
      }
    }
    let first = 0;
    for (const part of parts) {
      const end = first + part.rows.length;
      const retry = new Set<number>();
      for (const index of tally.retry) if (index >= first && index < end) retry.add(index - first);
      part.finish({ retry, activityFailed });
      first = end;
    }
    return failure;
  }

  /**
   * Serialises one collected row into `pending`, unless it is held back (its last write was
   * refused, and its back-off has not passed) or cannot be serialised: then it is retried.
   */
  private encode(row: PersistedState, index: number, pending: Pending[], tally: Tally, now: number, ignoreBackoff: boolean): void {
    const held = this.quarantine.get(row.entityKey);
    if (held !== undefined && held.retryAt > now && !ignoreBackoff) {
      tally.retry.add(index);
      tally.result.deferred++;
      return;
    }
    try {
      const encoded = encodeStateRow(row);
      // The state's and the live usage's object trees are not needed once encoded: let them
      // go now rather than keep them (and have them promoted to the old generation) while the
      // statement runs.
      row.state = null;
      row.liveUsage = null;
      if (encoded.mended === true) this.mended.rows++;
      pending.push({ index, row: encoded, bytes: packedBytesAtMost(encoded) + 64 });
    } catch (error) {
      // State that does not even serialise (a bug elsewhere): held like a refused row. Retried
      // first, whatever the rest does: a throw from here would leave the slice half collected.
      tally.retry.add(index);
      tally.result.quarantined++;
      try {
        this.hold(
          { entityKey: row.entityKey, shard: row.shard, epoch: row.epoch, seq: row.seq ?? 0, body: NO_BYTES, usageLive: null, expiresAt: null, usage: null },
          error,
          now,
        );
      } catch {
        // Only the log can fail here; the row is retried all the same.
      }
    }
  }

  /**
   * Writes one batch. A row error (something in some row's content) splits the batch in two
   * until the row is alone; any other error is the database's, and goes up to fail the flush.
   */
  private async writeBatch(batch: Pending[], tally: Tally, now: number): Promise<void> {
    try {
      const { written, fenced } = await this.store.writeStates(batch.map((pending) => pending.row));
      tally.result.written += written;
      tally.result.fenced += fenced.length;
      const refused = new Set(fenced);
      for (const { row } of batch) {
        if (refused.has(row.entityKey)) this.lose(row.shard, tally);
        else this.release(row.entityKey);
      }
    } catch (error) {
      const staleEpoch = sqlState(error) === SQLSTATE.staleEpoch;
      if (!staleEpoch && !isRowError(error)) throw error;
      if (batch.length > 1) {
        const middle = batch.length >>> 1;
        await this.writeBatch(batch.slice(0, middle), tally, now);
        await this.writeBatch(batch.slice(middle), tally, now);
        return;
      }
      const { index, row } = batch[0]!;
      if (staleEpoch) {
        // The fence trigger caught what the statement's own check let through (a race).
        tally.result.fenced++;
        this.lose(row.shard, tally);
        return;
      }
      this.hold(row, error, now);
      tally.retry.add(index);
      tally.result.quarantined++;
    }
  }

  /** Stops serving the shard at once: the rest of the flush is still being awaited. */
  private lose(shard: number, tally: Tally): void {
    tally.lostShards.add(shard);
    this.runtime.loseShard(this.runtime.shards[shard]!, null);
  }

  private hold(row: EncodedStateRow, error: unknown, now: number): void {
    const attempts = (this.quarantine.get(row.entityKey)?.attempts ?? 0) + 1;
    const delay = Math.min(this.options.retryBaseMs * 2 ** (attempts - 1), this.options.retryMaxMs);
    this.quarantine.set(row.entityKey, { attempts, retryAt: now + delay });
    this.log.error(
      { err: error, entity: row.entityKey, shard: row.shard, attempts, retryInMs: delay },
      'the database refused an actor’s state; it stays in memory and is retried with back-off',
    );
  }

  /**
   * Says, at most once a minute, that states were written with values replaced (see
   * encodeStateRow): the edges refuse those values, so something else let them in.
   */
  private logMended(): void {
    const { rows, loggedAt } = this.mended;
    const now = this.options.clock();
    if (rows === 0 || now - loggedAt < MENDED_LOG_MS) return;
    this.mended = { rows: 0, loggedAt: now };
    this.log.warn(
      { rows },
      'actor states held values that cannot be stored as they are (a cycle, a BigInt past 64 bits, U+0000 or a lone surrogate in usage counters, a time out of range); written with them replaced',
    );
  }

  private release(entityKey: string): void {
    const held = this.quarantine.get(entityKey);
    if (held === undefined) return;
    this.quarantine.delete(entityKey);
    this.log.info({ entity: entityKey, attempts: held.attempts }, 'a quarantined actor state was written');
  }

  /** Quarantine entries of actors no longer in memory (their shard was lost, say). */
  private forgetGone(): void {
    for (const entityKey of this.quarantine.keys()) if (!this.runtime.isActive(entityKey)) this.quarantine.delete(entityKey);
  }

  private *batches(pending: Pending[]): Generator<Pending[]> {
    let batch: Pending[] = [];
    let bytes = 0;
    for (const item of pending) {
      if (batch.length > 0 && (batch.length >= this.options.maxRows || bytes + item.bytes > this.options.maxBytes)) {
        yield batch;
        batch = [];
        bytes = 0;
      }
      batch.push(item);
      bytes += item.bytes;
    }
    if (batch.length > 0) yield batch;
  }

  private async touch(activity: ActivityTouches): Promise<void> {
    const { maxRows } = this.options;
    const longest = Math.max(activity.sessions.length, activity.keys.length);
    for (let from = 0; from < longest; from += maxRows) {
      await this.store.touchActivity(activity.sessions.slice(from, from + maxRows), activity.keys.slice(from, from + maxRows));
    }
  }
}
