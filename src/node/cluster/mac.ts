/**
 * What makes node traffic unforgeable: every forwarded batch and every entry a node writes
 * to the cluster's KV buckets carries an HMAC-SHA256 under a key derived from
 * TALLY_KEY_SECRET, which only nodes hold. NATS credentials decide who may publish at all;
 * this decides whose messages count. A client that can publish on a node's subject or write
 * a bucket but does not hold the secret can at most deny service: its batches go unanswered
 * and its entries are read as absent.
 *
 * - A batch is the MAC (32 bytes), a header (the sending process's random incarnation, a
 *   sequence number, the time it was sealed) and the MessagePack payload. The MAC covers
 *   the subject and the reply subject too, so a batch for one node does not verify at
 *   another and its answer goes only where its sender asked. A batch is taken once: its
 *   sequence must be above the last one seen from that sender (NATS keeps one publisher's
 *   order to one subscriber), and it must have been sealed within REPLAY_WINDOW_MS, so a
 *   recorded batch published again is refused.
 * - An answer is the MAC and the payload, sealed for the reply subject its batch named:
 *   a sender takes one answer per batch, so an answer replayed there finds nobody waiting.
 * - An entry is its JSON, a newline, and the MAC in base64url; the MAC covers bucket, key
 *   and JSON, so a value copied under another key or bucket does not verify. `nats kv get`
 *   still shows the JSON on the first line.
 *
 * What does not verify is refused the same way whatever the cause (no MAC, a wrong one, a
 * value that is not JSON): counted per kind, and said at most once a minute.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KvEntry } from '@nats-io/kv';
import type { Logger } from 'pino';

const MAC_BYTES = 32;
/** Incarnation (8 bytes), sequence (float64), sealed at (float64, ms since the epoch). */
const HEADER_BYTES = 24;
/** How old (or, between clocks, how far ahead) a batch may be when it arrives. */
export const REPLAY_WINDOW_MS = 30_000;
/** Senders remembered, at most: each process that forwarded to this node within the window. */
const SENDERS_KEPT = 10_000;
/** How often refusals of one kind are logged, at most. */
const REFUSAL_LOG_MS = 60_000;

/** What a refused message was: a forwarded batch, or an entry of the named bucket. */
export type RefusedKind = 'batch' | 'members' | 'leader' | 'shards' | 'operator';

export class ClusterMac {
  /** Messages refused so far, per kind. */
  readonly refused: Record<RefusedKind, number> = { batch: 0, members: 0, leader: 0, shards: 0, operator: 0 };
  private readonly saidAt = new Map<RefusedKind, number>();
  /** This process, as a sender of batches, and its last sequence number. */
  private readonly incarnation = randomBytes(8);
  private sequence = 0;
  /** The last sequence seen from each sender (by incarnation), and when. */
  private readonly senders = new Map<string, { sequence: number; at: number }>();

  constructor(
    private readonly key: Uint8Array,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** `payload`, sealed as a batch for `subject` whose answer goes to `reply`. */
  sealBatch(subject: string, reply: string, payload: Uint8Array): Uint8Array {
    const sealed = new Uint8Array(MAC_BYTES + HEADER_BYTES + payload.length);
    const header = sealed.subarray(MAC_BYTES, MAC_BYTES + HEADER_BYTES);
    header.set(this.incarnation, 0);
    const view = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
    view.setFloat64(8, ++this.sequence);
    view.setFloat64(16, this.clock());
    sealed.set(payload, MAC_BYTES + HEADER_BYTES);
    sealed.set(this.mac('batch', subject, reply, sealed.subarray(MAC_BYTES)), 0);
    return sealed;
  }

  /**
   * The payload of a batch received on `subject` with reply subject `reply`, or null (counted)
   * when its MAC does not verify, it was sealed outside the replay window, or its sender's
   * sequence did not move on (a batch seen before).
   */
  openBatch(subject: string, reply: string, sealed: Uint8Array): Uint8Array | null {
    if (
      sealed.length > MAC_BYTES + HEADER_BYTES &&
      timingSafeEqual(this.mac('batch', subject, reply, sealed.subarray(MAC_BYTES)), sealed.subarray(0, MAC_BYTES))
    ) {
      const header = sealed.subarray(MAC_BYTES, MAC_BYTES + HEADER_BYTES);
      const view = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
      const sender = Buffer.from(header.subarray(0, 8)).toString('hex');
      const sequence = view.getFloat64(8);
      const now = this.clock();
      const last = this.senders.get(sender);
      if (Math.abs(now - view.getFloat64(16)) <= REPLAY_WINDOW_MS && (last === undefined || sequence > last.sequence)) {
        this.remember(sender, sequence, now);
        return sealed.subarray(MAC_BYTES + HEADER_BYTES);
      }
    }
    this.refuse('batch');
    return null;
  }

  /** `payload`, sealed as the answer sent to `reply`. */
  sealReply(reply: string, payload: Uint8Array): Uint8Array {
    const sealed = new Uint8Array(MAC_BYTES + payload.length);
    sealed.set(payload, MAC_BYTES);
    sealed.set(this.mac('reply', reply, '', payload), 0);
    return sealed;
  }

  /** The payload of an answer received on `reply`, or null when its MAC does not verify (counted as `batch`). */
  openReply(reply: string, sealed: Uint8Array): Uint8Array | null {
    if (sealed.length > MAC_BYTES) {
      const payload = sealed.subarray(MAC_BYTES);
      if (timingSafeEqual(this.mac('reply', reply, '', payload), sealed.subarray(0, MAC_BYTES))) return payload;
    }
    this.refuse('batch');
    return null;
  }

  private remember(sender: string, sequence: number, now: number): void {
    this.senders.delete(sender);
    this.senders.set(sender, { sequence, at: now });
    if (this.senders.size <= SENDERS_KEPT) return;
    // Oldest first (a Map keeps insertion order, and each sender is re-inserted when seen):
    // a sender silent for the whole window has nothing left that could be replayed.
    for (const [old, seen] of this.senders) {
      if (this.senders.size <= SENDERS_KEPT && now - seen.at <= 2 * REPLAY_WINDOW_MS) break;
      this.senders.delete(old);
    }
  }

  /** The value to store under `bucket`/`key` for `record`. */
  sealEntry(bucket: string, key: string, record: unknown): string {
    const json = JSON.stringify(record);
    return `${json}\n${this.entryMac(bucket, key, json).toString('base64url')}`;
  }

  /**
   * The record a put entry holds, when a node wrote it: null for an entry whose MAC does not
   * verify or whose value is not JSON (counted as `kind`). Deletes carry no value: the
   * caller handles them before. With `renewed`, for entries rewritten every few seconds
   * (members, leader): null too for a record whose `at` (when its writer sealed it) is more
   * than REPLAY_WINDOW_MS from when the server stored it, which is an old record put back.
   */
  openEntry(kind: RefusedKind, bucket: string, entry: KvEntry, options: { renewed?: boolean } = {}): unknown {
    const value = entry.string();
    const split = value.lastIndexOf('\n');
    if (split > 0) {
      const json = value.slice(0, split);
      const given = Buffer.from(value.slice(split + 1), 'base64url');
      if (given.length === MAC_BYTES && timingSafeEqual(this.entryMac(bucket, entry.key, json), given)) {
        let record: unknown;
        try {
          record = JSON.parse(json) as unknown;
        } catch {
          // A verified value that is not JSON: written by a node of another build. Refused below.
        }
        if (record !== undefined && (options.renewed !== true || freshlyStored(record, entry))) return record;
      }
    }
    this.refuse(kind);
    return null;
  }

  /** The MAC of a batch or an answer: its kind, its subjects and its bytes. */
  private mac(kind: 'batch' | 'reply', subject: string, reply: string, bytes: Uint8Array): Buffer {
    return createHmac('sha256', this.key).update(`${kind}\0${subject}\0${reply}\0`).update(bytes).digest();
  }

  private entryMac(bucket: string, key: string, json: string): Buffer {
    return createHmac('sha256', this.key).update(`${bucket}\0${key}\0`).update(json).digest();
  }

  private refuse(kind: RefusedKind): void {
    this.refused[kind]++;
    const now = performance.now();
    if (now - (this.saidAt.get(kind) ?? Number.NEGATIVE_INFINITY) < REFUSAL_LOG_MS) return;
    this.saidAt.set(kind, now);
    this.log.warn(
      { kind, refused: this.refused[kind] },
      kind === 'batch'
        ? 'a forwarded batch without a valid MAC (not from a node holding TALLY_KEY_SECRET); not answered'
        : `an entry of ${kind} without a valid MAC (not written by a node holding TALLY_KEY_SECRET); ignored`,
    );
  }
}

/** Whether `record` was sealed (its `at`) within the replay window of when `entry` was stored. */
function freshlyStored(record: unknown, entry: KvEntry): boolean {
  const at = (record as { at?: unknown } | null)?.at;
  return typeof at === 'number' && Math.abs(entry.created.getTime() - at) <= REPLAY_WINDOW_MS;
}

/**
 * The record of a sealed entry, unverified: for the operator CLI, which reads the buckets to
 * show them and does not hold the key secret. Null for a value that is not a sealed JSON.
 */
export function readSealedUnverified(entry: KvEntry): unknown {
  const value = entry.string();
  const split = value.lastIndexOf('\n');
  try {
    return JSON.parse(split > 0 ? value.slice(0, split) : value) as unknown;
  } catch {
    return null;
  }
}
