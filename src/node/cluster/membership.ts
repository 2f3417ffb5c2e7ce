/**
 * Cluster membership in a NATS JetStream KV bucket (`tally_members`): one entry per node,
 * keyed by its id, renewed every heartbeat by compare-and-set on the entry's revision.
 *
 * The server here (nats-server 2.9) has no per-key TTL, so liveness is read, not stored:
 * every node watches the bucket and notes, on its own monotonic clock, when each entry's
 * revision last changed. A member whose entry has not changed for a lease is dead to that
 * observer. No wall clocks are compared across machines. The bucket's `max_age` (ten leases)
 * removes the entries of nodes that died long ago.
 *
 * - **Join.** A node that finds an entry under its own id waits until that entry has not
 *   changed for a whole lease (the previous incarnation is gone) and then takes it over by
 *   CAS; while the entry keeps changing, another process is running under this id, and the
 *   node keeps waiting (and says so). It never serves alongside another holder of its id.
 * - **Lease.** A node may decide for its shards only while its last successful renewal was
 *   sent less than half a lease ago (`leaseValid`), so a node frozen for longer than that
 *   stops deciding before any observer could call it dead.
 * - **Resuming.** A renewal that succeeds after a gap of half a lease or more fires
 *   `onLeaseResumed`: the node was frozen or cut off, may have been taken for dead, and
 *   checks what it holds against the fence before it decides again.
 * - **Losing the entry.** A renewal refused because the revision moved (another incarnation
 *   took the id over, or the entry expired while this node was frozen) ends this membership
 *   for good: `onLeaseLost` fires and the node must give up everything it owns.
 */
import { performance } from 'node:perf_hooks';
import type { KV, KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { isRevisionConflict } from './errors.js';
import { BucketWatch, openBucket, WATCH_PROBE_MS } from './kv.js';
import type { ClusterMac } from './mac.js';
import { MEMBERS_BUCKET } from './protocol.js';

/** Own renewals unseen for this many heartbeats: the watch stalled, and nobody ages meanwhile. */
const STALL_HEARTBEATS = 3;

export type MemberStatus = 'active' | 'draining' | 'leaving';

/** What a node writes into its entry (JSON, so `nats kv get tally_members <id>` reads it). */
export interface MemberRecord {
  id: string;
  /** Random per process: tells a restarted node from the one before it. */
  incarnation: string;
  /** Where its HTTP API listens. */
  address: string;
  version: string;
  status: MemberStatus;
  /** Renewals so far (every write changes the entry, so observers see it move). */
  beat: number;
  /** The lease this node runs with: what a reader without a watch (the CLI) ages entries by. */
  lease_ms?: number;
  /** HTTP requests received since the process started, as of this renewal (rates for the console). */
  requests?: number;
  /** Quota decisions made as owner since the process started, as of this renewal (rates for the console). */
  decisions?: number;
  /** When the node sealed this renewal (ms since the epoch): an old renewal put back is told by it. */
  at?: number;
}

/** A member as one observer sees it. */
export interface Member {
  record: MemberRecord;
  revision: number;
  /** Milliseconds since this observer last saw its entry change. */
  silentMs: number;
}

export interface MembershipOptions {
  nodeId: string;
  incarnation: string;
  address: string;
  version: string;
  leaseMs: number;
  heartbeatMs: number;
  log: Logger;
  /** Seals this node's entries and checks everyone else's. */
  mac: ClusterMac;
  /** Monotonic milliseconds. */
  clock?: () => number;
  /** The node's request count, carried in every renewal. */
  requests?: () => number;
  /** The node's quota decision count, carried in every renewal. */
  decisions?: () => number;
}

interface Seen {
  record: MemberRecord;
  revision: number;
  changedAt: number;
}

export class Membership {
  private revision = 0;
  private beat = 0;
  private status: MemberStatus = 'active';
  private lastRenewalSentAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private lost = false;
  private closed = false;
  /** Renewals failed in a row, and when that was last logged. */
  private failures = 0;
  private failureLoggedAt = 0;
  private readonly seen = new Map<string, Seen>();
  /** When the watch last delivered this node's own renewal: the observer's clock for ageing others. */
  private watchedAt: number | null = null;
  private watcher: { stop(): void } | null = null;
  private readonly clock: () => number;
  /** Called once, when a renewal shows that this node no longer holds its entry. */
  onLeaseLost: (reason: string) => void = () => {};
  /**
   * Called when a renewal succeeds after a gap of half a lease or more (the process was
   * frozen, or NATS was away): others may have taken this node for dead meanwhile, so what
   * it holds must be checked before it decides again.
   */
  onLeaseResumed: (gapMs: number) => void = () => {};
  /** Called whenever a member's entry appears, changes status or disappears. */
  onMembersChanged: () => void = () => {};

  private constructor(
    private readonly kv: KV,
    private readonly options: MembershipOptions,
  ) {
    this.clock = options.clock ?? (() => performance.now());
  }

  /** Opens (creating it if needed) the members bucket and starts watching it. */
  static async open(nc: NatsConnection, options: MembershipOptions): Promise<Membership> {
    const kv = await openBucket(nc, MEMBERS_BUCKET, { ttlMs: options.leaseMs * 10, log: options.log });
    const membership = new Membership(kv, options);
    await membership.watch();
    return membership;
  }

  /** A renewal not answered within this is given up (the lease decides what that means). */
  private get requestTimeoutMs(): number {
    const { heartbeatMs, leaseMs } = this.options;
    return Math.round(Math.min(leaseMs / 3, Math.max(2 * heartbeatMs, 500)));
  }

  /** Whether this node may decide now: its last renewal was sent less than half a lease ago. */
  get leaseValid(): boolean {
    return !this.lost && this.clock() - this.lastRenewalSentAt < this.options.leaseMs / 2;
  }

  /**
   * Every member this node sees whose entry changed within the last lease, itself included.
   *
   * Silence is measured against the watch, not the wall: a member's age is how long before
   * this node's own latest renewal (as the watch delivered it) its entry last changed. When
   * the watch stalls (NATS restarting, a slow consumer), nobody ages, so a node never takes
   * others for dead because its own view fell behind.
   */
  live(): Member[] {
    return this.all().filter((member) => member.silentMs <= this.options.leaseMs);
  }

  /** Every entry in the bucket, live or not, as this node sees it. */
  all(): Member[] {
    const now = this.watchedAt ?? this.clock();
    return [...this.seen.values()]
      .map((seen) => ({ record: seen.record, revision: seen.revision, silentMs: Math.max(0, now - seen.changedAt) }))
      .sort((a, b) => (a.record.id < b.record.id ? -1 : 1));
  }

  /**
   * Takes this node's entry: creates it, or, when a previous incarnation's entry is there,
   * waits until it has stayed unchanged for a whole lease and takes it over. Then renews it
   * every heartbeat. `signal` aborts the wait (the node is told to stop while waiting).
   */
  async join(signal?: AbortSignal): Promise<void> {
    const { nodeId, leaseMs, heartbeatMs, log } = this.options;
    let waitingFor: { revision: number; since: number } | null = null;
    let said = false;
    let unreachableSaid = false;
    /** A write of the entry that did not land: null, and the loop looks again (a conflict is expected; anything else is said once). */
    const joinWriteFailed = (error: unknown): null => {
      if (isRevisionConflict(error)) return null;
      if (!unreachableSaid) log.warn({ node: nodeId, err: error }, 'joining: the members bucket refused a write; retrying');
      unreachableSaid = true;
      return null;
    };
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      let entry: KvEntry | null;
      try {
        entry = await this.kv.get(nodeId);
      } catch (error) {
        // JetStream not answering yet (a new cluster electing leaders, a server restarting).
        if (!unreachableSaid) log.warn({ node: nodeId, err: error }, 'joining: the members bucket does not answer yet; retrying');
        unreachableSaid = true;
        await sleep(Math.min(heartbeatMs, 250), signal);
        continue;
      }
      const sentAt = this.clock();
      if (entry === null || entry.operation !== 'PUT') {
        const revision = await this.kv.create(nodeId, this.encode()).catch(joinWriteFailed);
        if (revision !== null) return this.started(revision, sentAt);
      } else if (waitingFor === null || waitingFor.revision !== entry.revision) {
        // Someone holds the id and renewed it since we last looked: wait a lease from now.
        waitingFor = { revision: entry.revision, since: this.clock() };
      } else if (this.clock() - waitingFor.since >= leaseMs) {
        const revision = await this.kv.update(nodeId, this.encode(), entry.revision).catch(joinWriteFailed);
        if (revision !== null) {
          const previous = this.options.mac.openEntry('members', MEMBERS_BUCKET, entry);
          log.info(
            { node: nodeId, previous: asMemberRecord(previous)?.incarnation ?? null },
            'took over the entry of this node id from a previous incarnation',
          );
          return this.started(revision, sentAt);
        }
        waitingFor = null;
      }
      if (waitingFor !== null && !said) {
        said = true;
        log.warn(
          { node: nodeId, leaseMs },
          'another process holds this node id; waiting until its lease has run out (a restart after a crash waits about one lease)',
        );
      }
      await sleep(Math.min(heartbeatMs, 250), signal);
    }
  }

  /** Writes a new status (draining, leaving) at the next renewal, and at once. */
  async setStatus(status: MemberStatus): Promise<void> {
    this.status = status;
    await this.renew();
  }

  /** Removes this node's entry and stops renewing it (a planned leave). */
  async leave(): Promise<void> {
    this.stopTimer();
    // A renewal that failed has been logged where it failed.
    await this.renewing?.catch(() => undefined);
    try {
      if (!this.lost && this.revision > 0) {
        // Said first, sealed: the others take a delete for a departure only after it.
        this.status = 'leaving';
        this.beat++;
        // A revision that moved on (a successor took the id): the successor's entry is left alone, as it should be.
        const said = await this.kv.update(this.options.nodeId, this.encode(), this.revision, this.requestTimeoutMs).catch(lostCompareAndSet);
        if (said !== null) await this.kv.delete(this.options.nodeId, { previousSeq: said }).catch(lostCompareAndSet);
      }
    } finally {
      // Left, even when the delete failed: the entry then expires as after a crash.
      this.lost = true;
    }
  }

  /** Stops renewing and watching; the entry stays until it expires (as after a crash). */
  close(): void {
    this.closed = true;
    this.stopTimer();
    this.watcher?.stop();
  }

  private started(revision: number, sentAt: number): void {
    this.revision = revision;
    this.lastRenewalSentAt = sentAt;
    this.timer = setInterval(() => void this.renew(), this.options.heartbeatMs);
    this.timer.unref?.();
  }

  /** One renewal, by CAS on the revision this node wrote last. Never two at once. */
  private renew(): Promise<void> {
    if (this.renewing !== null || this.lost || this.closed) return this.renewing ?? Promise.resolve();
    this.renewing = (async () => {
      const sentAt = this.clock();
      try {
        this.beat++;
        this.revision = await this.kv.update(this.options.nodeId, this.encode(), this.revision, this.requestTimeoutMs);
        const gapMs = sentAt - this.lastRenewalSentAt;
        this.lastRenewalSentAt = sentAt;
        if (this.failures > 0) this.options.log.info({ node: this.options.nodeId, failures: this.failures }, 'heartbeat renewed again');
        this.failures = 0;
        if (gapMs >= this.options.leaseMs / 2) this.onLeaseResumed(gapMs);
      } catch (error) {
        if (isRevisionConflict(error) && (await this.adoptOwnWrite())) return;
        if (isRevisionConflict(error)) {
          this.lost = true;
          this.stopTimer();
          const reason = 'this node no longer holds its member entry (taken over, or expired while the node was not running)';
          this.options.log.error({ node: this.options.nodeId, err: error }, reason);
          this.onLeaseLost(reason);
        } else {
          // NATS is away or slow: the lease runs down on its own; the next beat tries again.
          // Said when it starts failing and every FAILURE_LOG_MS after, not every beat.
          this.failures++;
          const now = this.clock();
          if (this.failures === 1 || now - this.failureLoggedAt >= FAILURE_LOG_MS) {
            this.failureLoggedAt = now;
            this.options.log.warn({ node: this.options.nodeId, err: error, failures: this.failures }, 'heartbeat failed; retrying every heartbeat');
          }
        }
      } finally {
        this.renewing = null;
      }
    })();
    return this.renewing;
  }

  /**
   * A renewal refused by its compare-and-set: the entry holds something else than this
   * node's last write. Only a record sealed by another incarnation of this id means the
   * entry was taken over. This incarnation's own write (a renewal whose answer was lost), a
   * delete, or a put no node sealed is still this node's entry: take its revision and go on,
   * so the next renewal writes over it.
   */
  private async adoptOwnWrite(): Promise<boolean> {
    // Unreadable now: the renewal fails as it would have, and the next one looks again.
    const entry = await this.kv.get(this.options.nodeId).catch(() => null);
    if (entry === null) return false;
    if (entry.operation === 'PUT') {
      const record = asMemberRecord(this.options.mac.openEntry('members', MEMBERS_BUCKET, entry));
      if (record !== null && record.incarnation !== this.options.incarnation) return false;
    }
    this.revision = entry.revision;
    return true;
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private encode(): string {
    const { nodeId, incarnation, address, version } = this.options;
    const record: MemberRecord = {
      id: nodeId,
      incarnation,
      address,
      version,
      status: this.status,
      beat: this.beat,
      lease_ms: this.options.leaseMs,
      requests: this.options.requests?.() ?? 0,
      decisions: this.options.decisions?.() ?? 0,
      at: Date.now(),
    };
    return this.options.mac.sealEntry(MEMBERS_BUCKET, nodeId, record);
  }

  private async watch(): Promise<void> {
    this.watcher = await BucketWatch.start(this.kv, (entry) => this.observe(entry), { name: MEMBERS_BUCKET, log: this.options.log, probeMs: WATCH_PROBE_MS });
  }

  private observe(entry: KvEntry): void {
    const before = this.seen.get(entry.key);
    if (before !== undefined && before.revision >= entry.revision) return;
    const record = entry.operation === 'PUT' ? asMemberRecord(this.options.mac.openEntry('members', MEMBERS_BUCKET, entry, { renewed: true })) : null;
    if (
      record === null ||
      record.id !== entry.key ||
      (before !== undefined && record.incarnation === before.record.incarnation && record.beat <= before.record.beat)
    ) {
      // A member leaves at once only by deleting its entry after saying it leaves. Any other
      // delete, a put no node sealed, or an old renewal put back is not a renewal: the member
      // is silent, and ages out after a lease unless it renews.
      if (entry.operation !== 'PUT' && before?.record.status === 'leaving' && this.seen.delete(entry.key)) this.onMembersChanged();
      return;
    }
    const now = this.clock();
    this.seen.set(entry.key, { record, revision: entry.revision, changedAt: now });
    if (entry.key === this.options.nodeId && record.incarnation === this.options.incarnation) {
      // This node's own renewals went unseen for a while (NATS restarting, a partition):
      // everyone else's did too, as far as it can tell. They all get a fresh lease from now
      // rather than be taken for dead because this node could not see them.
      if (this.watchedAt !== null && now - this.watchedAt > STALL_HEARTBEATS * this.options.heartbeatMs) {
        for (const other of this.seen.values()) other.changedAt = Math.max(other.changedAt, now);
      }
      this.watchedAt = now;
    }
    if (before === undefined || before.record.status !== record.status || before.record.incarnation !== record.incarnation) this.onMembersChanged();
  }
}

const FAILURE_LOG_MS = 10_000;

const MEMBER_STATUSES: readonly string[] = ['active', 'draining', 'leaving'] satisfies MemberStatus[];

/** A member entry's record, checked for the fields every reader relies on; null for anything else. */
export function asMemberRecord(value: unknown): MemberRecord | null {
  if (typeof value !== 'object' || value === null) return null;
  const record = value as Record<string, unknown>;
  const text = (field: string) => typeof record[field] === 'string';
  if (!text('id') || !text('incarnation') || !text('address') || !text('version') || !MEMBER_STATUSES.includes(record.status as string)) return null;
  if (typeof record.beat !== 'number') return null;
  // The optional counts and times, when present, are what they say (the console draws them).
  for (const field of ['lease_ms', 'requests', 'decisions', 'at']) {
    const count = record[field];
    if (count !== undefined && !(Number.isSafeInteger(count) && (count as number) >= 0)) return null;
  }
  return record as unknown as MemberRecord;
}

/**
 * A delete of the member entry that lost its compare-and-set (a successor holds the id):
 * nothing to do. Any other failure (NATS away, JetStream not answering) is thrown, and the
 * leave reports it.
 */
function lostCompareAndSet(error: unknown): null {
  if (isRevisionConflict(error)) return null;
  throw error;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason ?? new Error('aborted'));
      },
      { once: true },
    );
  });
}
