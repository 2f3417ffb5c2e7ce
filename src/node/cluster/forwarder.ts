/**
 * Forwarding to an entity's owner over NATS, batched: items for one owner collected within
 * one turn of the event loop (or up to MAX_BATCH of them) go as one request to
 * `tally.node.<owner>` (no queue group: exactly that node). The batches of one turn, for
 * every owner, are published together, so nats.js writes them in one socket write: on few
 * cores the nats-server's cost per read and write, more than the nodes', bounds a cluster.
 * Every batch has a deadline, so an owner that is gone or frozen costs the caller at most
 * `timeoutMs`, never a hang.
 *
 * Replies come back on one subscription of this node's own (`<inbox>.<batch id>`), and one
 * timer sweeps the deadlines, rather than a request object, an error with its stack and a
 * timer per batch as nats.js's `request` makes: at one item per batch (few requests in
 * flight) that was a tenth of a forwarding node's time.
 *
 * Batches and replies are sealed (mac.ts): a batch whose MAC does not verify is not
 * answered, a reply whose MAC does not verify fails its batch as unreachable. Whoever can
 * publish on a node's subject without the key secret can make it do nothing.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { ClusterMac } from './mac.js';
import { MAX_BATCH_ITEMS, nodeSubject, WIRE_VERSION } from './protocol.js';
import {
  decode,
  encode,
  type ForwardBatch,
  type ForwardItem,
  type ForwardReply,
  type ForwardResult,
  MALFORMED_ITEM,
  readForwardItem,
  toWireError,
} from './wire.js';

/** A refused batch is logged at most this often (a flood of them says no more than the first). */
const REFUSAL_LOG_MS = 60_000;

const MAX_BATCH = 100;

export interface ForwardStats {
  batches: number;
  items: number;
  failures: number;
  /** Batches received that were not answered: unreadable, of another version, or too large. */
  refusedBatches: number;
}

interface Waiting {
  item: ForwardItem;
  resolve: (result: ForwardResult) => void;
}

/** A batch sent and not answered yet. */
interface InFlight {
  owner: string;
  queue: Waiting[];
  deadline: number;
}

export class Forwarder {
  private readonly queues = new Map<string, Waiting[]>();
  private subscription: Subscription | null = null;
  private readonly inbox: string;
  private readonly replies: Subscription;
  private readonly inFlight = new Map<number, InFlight>();
  private nextId = 1;
  private flushScheduled = false;
  private readonly sweeper: NodeJS.Timeout;
  readonly stats: ForwardStats = { batches: 0, items: 0, failures: 0, refusedBatches: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly mac: ClusterMac,
    private readonly timeoutMs = 2000,
  ) {
    this.inbox = createInbox();
    this.replies = nc.subscribe(`${this.inbox}.*`, { callback: (error, msg) => (error === null ? this.received(msg) : undefined) });
    // Deadlines are kept to within a tenth of the timeout (at least 10 ms).
    this.sweeper = setInterval(() => this.expire(), Math.max(10, Math.round(timeoutMs / 10)));
    this.sweeper.unref();
  }

  /** Sends `item` to `owner` in the next batch; never rejects (an unreachable owner is an answer). */
  send(owner: string, item: ForwardItem): Promise<ForwardResult> {
    return new Promise((resolve) => {
      let queue = this.queues.get(owner);
      if (queue === undefined) {
        queue = [];
        this.queues.set(owner, queue);
        if (!this.flushScheduled) {
          this.flushScheduled = true;
          setImmediate(this.flushAll);
        }
      }
      queue.push({ item, resolve });
      if (queue.length >= MAX_BATCH) this.flush(owner);
    });
  }

  /** Every owner's batch of this turn, published together: nats.js writes them to the socket at once. */
  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    for (const owner of [...this.queues.keys()]) this.flush(owner);
  };

  /** Answers batches sent to this node, each item by `decide`. */
  serve(nodeId: string, decide: (item: ForwardItem) => Promise<ForwardResult>): void {
    this.subscription = this.nc.subscribe(nodeSubject(nodeId), {
      callback: (error, msg) => {
        if (error !== null) {
          this.log.warn({ err: error }, 'forwarded-request subscription failed');
          return;
        }
        this.answer(msg, decide).catch((error: unknown) => this.log.warn({ err: error }, 'a forwarded batch could not be answered'));
      },
    });
  }

  /** Stops serving forwarded batches (replies to this node's own batches still arrive until `close`). */
  stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
  }

  /** Answers every batch still waiting as unreachable, and stops listening for replies. */
  close(): void {
    this.stop();
    clearInterval(this.sweeper);
    this.replies.unsubscribe();
    for (const [id, batch] of this.inFlight) this.settle(id, batch, (waiting) => waiting.resolve(unreachable(batch.owner, 'this node is shutting down')));
  }

  /**
   * Answers one batch: every item on its own, a malformed one with an error, never a throw.
   * A batch that cannot be read, of another version, or of more than MAX_BATCH_ITEMS items is
   * not answered (its sender's deadline answers for it), and said at most once a minute.
   */
  private async answer(msg: Msg, decide: (item: ForwardItem) => Promise<ForwardResult>): Promise<void> {
    if (msg.reply === undefined) return; // nowhere to answer: not a node's batch
    const payload = this.mac.openBatch(msg.subject, msg.reply, msg.data);
    if (payload === null) return; // counted and said by the MAC check
    let batch: ForwardBatch;
    try {
      batch = decode<ForwardBatch>(payload);
    } catch (error) {
      this.refuse('a forwarded batch could not be read; not answered', error);
      return;
    }
    if (typeof batch !== 'object' || batch === null || batch.v !== WIRE_VERSION || !Array.isArray(batch.items)) {
      this.refuse('a forwarded batch of an unknown version or shape; not answered');
      return;
    }
    if (batch.items.length > MAX_BATCH_ITEMS) {
      this.refuse(`a forwarded batch of more than ${MAX_BATCH_ITEMS} items; not answered`);
      return;
    }
    const results = await Promise.all(batch.items.map((raw) => decideSafely(readForwardItem(raw), decide)));
    msg.respond(this.mac.sealReply(msg.reply, encode({ results } satisfies ForwardReply)));
  }

  private refusedSaidAt = Number.NEGATIVE_INFINITY;

  private refuse(message: string, error?: unknown): void {
    this.stats.refusedBatches++;
    const now = performance.now();
    if (now - this.refusedSaidAt < REFUSAL_LOG_MS) return;
    this.refusedSaidAt = now;
    this.log.warn({ err: error, refused: this.stats.refusedBatches }, message);
  }

  private flush(owner: string): void {
    const queue = this.queues.get(owner);
    if (queue === undefined || queue.length === 0) return;
    this.queues.delete(owner);
    this.stats.batches++;
    this.stats.items += queue.length;
    const batch: ForwardBatch = { v: WIRE_VERSION, items: queue.map((waiting) => waiting.item) };
    const id = this.nextId++;
    this.inFlight.set(id, { owner, queue, deadline: performance.now() + this.timeoutMs });
    try {
      const subject = nodeSubject(owner);
      const reply = `${this.inbox}.${id}`;
      this.nc.publish(subject, this.mac.sealBatch(subject, reply, encode(batch)), { reply });
    } catch (error) {
      this.fail(id, String((error as Error)?.message ?? error));
    }
  }

  private received(msg: Msg): void {
    const id = Number(msg.subject.slice(this.inbox.length + 1));
    const batch = this.inFlight.get(id);
    if (batch === undefined) return; // answered after its deadline
    // The server's "no responders" (503): nobody listens on the owner's subject. It has not
    // subscribed yet or has just left; the map is about to say so, and the sender asks it
    // again, as after a `moved`.
    if (msg.headers?.hasError === true) {
      if (msg.headers.code === 503) this.settle(id, batch, (waiting) => waiting.resolve({ moved: true }));
      else this.fail(id, `status ${msg.headers.code} ${msg.headers.description}`);
      return;
    }
    const payload = this.mac.openReply(msg.subject, msg.data);
    if (payload === null) {
      this.fail(id, 'the answer did not come from a node holding the key secret');
      return;
    }
    let results: ForwardResult[];
    try {
      ({ results } = decode<ForwardReply>(payload));
      if (!Array.isArray(results)) throw new TypeError('no results');
    } catch {
      // The owner's answer is unreadable: every item of the batch fails as unreachable, which is what it is.
      this.fail(id, 'the owner’s answer could not be read');
      return;
    }
    this.settle(id, batch, (waiting, i) => waiting.resolve(results[i] ?? unreachable(batch.owner, 'the owner answered fewer items than it was sent')));
  }

  private expire(): void {
    const now = performance.now();
    for (const [id, batch] of this.inFlight) if (batch.deadline <= now) this.fail(id, `no answer within ${this.timeoutMs} ms`);
  }

  private fail(id: number, why: string): void {
    const batch = this.inFlight.get(id);
    if (batch === undefined) return;
    this.stats.failures++;
    this.settle(id, batch, (waiting) => waiting.resolve(unreachable(batch.owner, why)));
  }

  private settle(id: number, batch: InFlight, answer: (waiting: Waiting, index: number) => void): void {
    this.inFlight.delete(id);
    for (let i = 0; i < batch.queue.length; i++) answer(batch.queue[i]!, i);
  }
}

function unreachable(owner: string, why: string): ForwardResult {
  return { err: { code: 'owner_unavailable', detail: `the owner of this entity (node ${owner}) cannot be reached: ${why}`, retryAfterMs: 1000 } };
}

/** `decide`'s answer for an item, or the error it threw as the owner's answer: one bad item never fails its batch. */
async function decideSafely(item: ForwardItem | null, decide: (item: ForwardItem) => Promise<ForwardResult>): Promise<ForwardResult> {
  if (item === null) return MALFORMED_ITEM;
  try {
    return await decide(item);
  } catch (error) {
    return { err: toWireError(error) };
  }
}
