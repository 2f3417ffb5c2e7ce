/**
 * What makes node traffic unforgeable: every forwarded batch and every entry a node writes
 * to the cluster's KV buckets carries an HMAC-SHA256 under a key derived from
 * TALLY_KEY_SECRET, which only nodes hold. NATS credentials decide who may publish at all;
 * this decides whose messages count. A client that can publish on a node's subject or write
 * a bucket but does not hold the secret can at most deny service: its batches go unanswered
 * and its entries are read as absent.
 *
 * - A batch is the MAC (32 bytes) followed by the MessagePack payload; the MAC covers the
 *   subject too, so a batch for one node does not verify at another.
 * - An entry is its JSON, a newline, and the MAC in base64url; the MAC covers bucket, key
 *   and JSON, so a value copied under another key or bucket does not verify. `nats kv get`
 *   still shows the JSON on the first line.
 *
 * What does not verify is refused the same way whatever the cause (no MAC, a wrong one, a
 * value that is not JSON): counted per kind, and said at most once a minute.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { KvEntry } from '@nats-io/kv';
import type { Logger } from 'pino';

const MAC_BYTES = 32;
/** How often refusals of one kind are logged, at most. */
const REFUSAL_LOG_MS = 60_000;

/** What a refused message was: a forwarded batch, or an entry of the named bucket. */
export type RefusedKind = 'batch' | 'members' | 'leader' | 'shards' | 'operator';

export class ClusterMac {
  /** Messages refused so far, per kind. */
  readonly refused: Record<RefusedKind, number> = { batch: 0, members: 0, leader: 0, shards: 0, operator: 0 };
  private readonly saidAt = new Map<RefusedKind, number>();

  constructor(
    private readonly key: Uint8Array,
    private readonly log: Logger,
  ) {}

  /** `payload`, sealed for `subject`. */
  sealBatch(subject: string, payload: Uint8Array): Uint8Array {
    const sealed = new Uint8Array(MAC_BYTES + payload.length);
    sealed.set(this.batchMac(subject, payload), 0);
    sealed.set(payload, MAC_BYTES);
    return sealed;
  }

  /** The payload of a batch received on `subject`, or null when its MAC does not verify (counted). */
  openBatch(subject: string, sealed: Uint8Array): Uint8Array | null {
    if (sealed.length > MAC_BYTES) {
      const payload = sealed.subarray(MAC_BYTES);
      if (timingSafeEqual(this.batchMac(subject, payload), sealed.subarray(0, MAC_BYTES))) return payload;
    }
    this.refuse('batch');
    return null;
  }

  /** The value to store under `bucket`/`key` for `record`. */
  sealEntry(bucket: string, key: string, record: unknown): string {
    const json = JSON.stringify(record);
    return `${json}\n${this.entryMac(bucket, key, json).toString('base64url')}`;
  }

  /**
   * The record a put entry holds, when a node wrote it: null for an entry whose MAC does not
   * verify or whose value is not JSON (counted as `kind`). Deletes carry no value: the
   * caller handles them before.
   */
  openEntry(kind: RefusedKind, bucket: string, entry: KvEntry): unknown {
    const value = entry.string();
    const split = value.lastIndexOf('\n');
    if (split > 0) {
      const json = value.slice(0, split);
      const given = Buffer.from(value.slice(split + 1), 'base64url');
      if (given.length === MAC_BYTES && timingSafeEqual(this.entryMac(bucket, entry.key, json), given)) {
        try {
          return JSON.parse(json) as unknown;
        } catch {
          // A verified value that is not JSON: written by a node of another build. Refused below.
        }
      }
    }
    this.refuse(kind);
    return null;
  }

  private batchMac(subject: string, payload: Uint8Array): Buffer {
    return createHmac('sha256', this.key).update(subject).update('\0').update(payload).digest();
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
