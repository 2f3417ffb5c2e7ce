/**
 * Forwarding to an entity's owner over NATS, batched by load: each owner has at most one
 * flush in flight, a flush being its whole queue sent at once as batches of up to MAX_BATCH
 * items to `tally.node.<owner>` (no queue group: exactly that node). What is sent to an
 * owner while its flush is out waits in its queue, and goes as the next flush the moment the
 * last batch of that flush ends, however it ends (answered, refused, failed, expired). So a
 * lone request goes at once, and under load each batch carries what arrived during the
 * round trip before it: batches of one turn only averaged 1.3 items at 16 connections. A
 * queue longer than MAX_BATCH goes as several batches together rather than one per round
 * trip, since holding a full batch back would only add a round trip to its items.
 *
 * Items wait behind a flush only while it is fresh: once it has been out HOLD_MS with no
 * answer (an owner that is leaving, frozen or gone), what queued behind it goes as a flush of
 * its own, as it did before forwarding batched by load. Otherwise every item queued for an
 * owner that stopped answering would wait out the same deadline, where on its own it would
 * mostly have been told at once that nobody listens there (and been sent again to the new
 * owner): a rolling restart answered 503s that way.
 *
 * An owner with nothing in flight gets what one turn of the event loop collected, at the end
 * of that turn. The batches of one turn, for every owner, are published together, and so
 * are those released by the answers of one socket read (nats.js calls their callbacks in one
 * go): nats.js writes each group in one socket write, and on few cores the nats-server's cost
 * per read and write, more than the nodes', bounds a cluster.
 *
 * Every batch has a deadline, counted from when the oldest of its items was queued rather
 * than from when it went, so an owner that is gone or frozen costs a caller at most
 * `timeoutMs`, never a hang, however long it waited behind the flush ahead: counted from
 * the send, an item queued behind a frozen owner's batch waited twice the timeout, longer
 * than a lease (test/cluster/failOpen.test.ts). A batch that expires releases its owner as
 * an answer does.
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
/** How long items wait behind an owner's unanswered flush; an answer under load takes a few ms. */
const HOLD_MS = 50;

const SHUTTING_DOWN = 'this node is shutting down';
/** Every item of a batch nobody was listening for (no responders on the owner's subject). */
const UNHEARD: ForwardResult = Object.freeze({ moved: true, unheard: true });

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

/** What waits for an owner's next flush, and when the oldest of it was queued (its deadline counts from then). */
interface Queue {
  since: number;
  waiting: Waiting[];
}

/** A batch sent and not answered yet. */
interface InFlight {
  owner: string;
  queue: Waiting[];
  deadline: number;
}

export class Forwarder {
  private readonly queues = new Map<string, Queue>();
  private subscription: Subscription | null = null;
  private readonly inbox: string;
  private readonly replies: Subscription;
  private readonly inFlight = new Map<number, InFlight>();
  /** Per owner: its batches in flight, and when the latest flush went; an owner with none has no entry. */
  private readonly outstanding = new Map<string, { batches: number; sentAt: number }>();
  private nextId = 1;
  private flushScheduled = false;
  private closed = false;
  /** Replies to batches sent here, decided this turn and not published yet. */
  private unsent: { msg: Msg; data: Uint8Array }[] = [];
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
    // Deadlines are kept to within a tenth of the timeout (at least 10 ms), and what waits
    // behind a flush out for HOLD_MS goes within as long again.
    this.sweeper = setInterval(() => this.expire(), Math.max(10, Math.min(HOLD_MS, Math.round(timeoutMs / 10))));
    this.sweeper.unref();
  }

  /**
   * Sends `item` to `owner` in its next flush: at the end of this turn, or when the flush in
   * flight to it ends. Never rejects (an unreachable owner is an answer).
   */
  send(owner: string, item: ForwardItem): Promise<ForwardResult> {
    // After `close` no answer could arrive and no deadline would be swept.
    if (this.closed) return Promise.resolve(unreachable(owner, SHUTTING_DOWN));
    return new Promise((resolve) => {
      let queue = this.queues.get(owner);
      if (queue === undefined) {
        queue = { since: performance.now(), waiting: [] };
        this.queues.set(owner, queue);
      }
      queue.waiting.push({ item, resolve });
      if (!this.flushScheduled && !this.holding(owner, performance.now())) {
        this.flushScheduled = true;
        setImmediate(this.flushAll);
      }
    });
  }

  /** The flushes of this turn, for every owner with nothing in flight, published together: nats.js writes them to the socket at once. */
  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    const now = performance.now();
    for (const owner of [...this.queues.keys()]) if (!this.holding(owner, now)) this.flush(owner);
  };

  /** Whether items for `owner` wait for its flush in flight: there is one, and it went less than HOLD_MS ago. */
  private holding(owner: string, now: number): boolean {
    const out = this.outstanding.get(owner);
    return out !== undefined && now - out.sentAt < HOLD_MS;
  }

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

  /** Answers every item still waiting, sent or queued, as unreachable, and stops listening for replies. */
  close(): void {
    this.closed = true;
    this.stop();
    clearInterval(this.sweeper);
    this.replies.unsubscribe();
    // Each settled batch releases its owner, whose queue `flush` then answers, being closed.
    for (const [id, batch] of this.inFlight) this.settle(id, batch, (waiting) => waiting.resolve(unreachable(batch.owner, SHUTTING_DOWN)));
    for (const owner of [...this.queues.keys()]) this.flush(owner);
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
    this.reply(msg, this.mac.sealReply(msg.reply, encode({ results } satisfies ForwardReply)));
  }

  /**
   * Replies decided in one turn of the event loop go out together at its end: nats.js writes
   * what is published within one microtask in one socket write, and batches answered in
   * different microtasks (each awaits its own decisions) would each cost a write, here and
   * at the nats-server.
   */
  private reply(msg: Msg, data: Uint8Array): void {
    this.unsent.push({ msg, data });
    if (this.unsent.length === 1) setImmediate(this.sendReplies);
  }

  private readonly sendReplies = (): void => {
    const replies = this.unsent;
    this.unsent = [];
    for (const { msg, data } of replies) msg.respond(data);
  };

  private refusedSaidAt = Number.NEGATIVE_INFINITY;

  private refuse(message: string, error?: unknown): void {
    this.stats.refusedBatches++;
    const now = performance.now();
    if (now - this.refusedSaidAt < REFUSAL_LOG_MS) return;
    this.refusedSaidAt = now;
    this.log.warn({ err: error, refused: this.stats.refusedBatches }, message);
  }

  /** Sends `owner`'s whole queue as one flush, in batches of at most MAX_BATCH items; once closed, answers it as unreachable. */
  private flush(owner: string): void {
    const queue = this.queues.get(owner);
    if (queue === undefined) return;
    this.queues.delete(owner);
    if (this.closed) {
      for (const waiting of queue.waiting) waiting.resolve(unreachable(owner, SHUTTING_DOWN));
      return;
    }
    const deadline = queue.since + this.timeoutMs;
    for (let start = 0; start < queue.waiting.length; start += MAX_BATCH) this.publish(owner, queue.waiting.slice(start, start + MAX_BATCH), deadline);
  }

  private publish(owner: string, queue: Waiting[], deadline: number): void {
    this.stats.batches++;
    this.stats.items += queue.length;
    const out = this.outstanding.get(owner);
    if (out === undefined) this.outstanding.set(owner, { batches: 1, sentAt: performance.now() });
    else {
      out.batches++;
      out.sentAt = performance.now();
    }
    const batch: ForwardBatch = { v: WIRE_VERSION, items: queue.map((waiting) => waiting.item) };
    const id = this.nextId++;
    this.inFlight.set(id, { owner, queue, deadline });
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
    // subscribed yet, has just left, or has died (the map names it until its lease runs
    // out); the sender asks again as after a `moved`, for less long (router.ts).
    if (msg.headers?.hasError === true) {
      if (msg.headers.code === 503) this.settle(id, batch, (waiting) => waiting.resolve(UNHEARD));
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
    // What waited behind a flush that has been out HOLD_MS goes now.
    for (const owner of [...this.queues.keys()]) if (!this.holding(owner, now)) this.flush(owner);
  }

  private fail(id: number, why: string): void {
    const batch = this.inFlight.get(id);
    if (batch === undefined) return;
    this.stats.failures++;
    this.settle(id, batch, (waiting) => waiting.resolve(unreachable(batch.owner, why)));
  }

  /**
   * Ends a batch: every way one ends comes here, so its owner is always released, and what
   * queued behind the flush goes (or, once closed, is answered) the moment its last batch ends.
   */
  private settle(id: number, batch: InFlight, answer: (waiting: Waiting, index: number) => void): void {
    this.inFlight.delete(id);
    for (let i = 0; i < batch.queue.length; i++) answer(batch.queue[i]!, i);
    const out = this.outstanding.get(batch.owner)!;
    if (--out.batches > 0) return;
    this.outstanding.delete(batch.owner);
    this.flush(batch.owner);
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
