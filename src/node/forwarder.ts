/**
 * Forwarding to an entity's owner over NATS, batched: items for one owner collected within
 * one turn of the event loop (or up to MAX_BATCH of them) go as one request to
 * `tally.node.<owner>` (no queue group: exactly that node). Every batch has a deadline, so
 * an owner that is gone or frozen costs the caller at most `timeoutMs`, never a hang.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { decode, encode, type ForwardBatch, type ForwardItem, type ForwardReply, type ForwardResult, WIRE_VERSION } from './wire.js';

const MAX_BATCH = 100;

export interface ForwardStats {
  batches: number;
  items: number;
  failures: number;
}

interface Waiting {
  item: ForwardItem;
  resolve: (result: ForwardResult) => void;
}

export const nodeSubject = (nodeId: string) => `tally.node.${nodeId}`;

export class Forwarder {
  private readonly queues = new Map<string, Waiting[]>();
  private subscription: Subscription | null = null;
  readonly stats: ForwardStats = { batches: 0, items: 0, failures: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly timeoutMs = 2000,
  ) {}

  /** Sends `item` to `owner` in the next batch; never rejects (an unreachable owner is an answer). */
  send(owner: string, item: ForwardItem): Promise<ForwardResult> {
    return new Promise((resolve) => {
      let queue = this.queues.get(owner);
      if (queue === undefined) {
        queue = [];
        this.queues.set(owner, queue);
        setImmediate(() => this.flush(owner));
      }
      queue.push({ item, resolve });
      if (queue.length >= MAX_BATCH) this.flush(owner);
    });
  }

  /** Answers batches sent to this node, each item by `decide`. */
  serve(nodeId: string, decide: (item: ForwardItem) => Promise<ForwardResult>): void {
    this.subscription = this.nc.subscribe(nodeSubject(nodeId), {
      callback: (error, msg) => {
        if (error !== null) {
          this.log.warn({ err: error }, 'forwarded-request subscription failed');
          return;
        }
        void this.answer(msg, decide);
      },
    });
  }

  stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
  }

  private async answer(msg: Msg, decide: (item: ForwardItem) => Promise<ForwardResult>): Promise<void> {
    let batch: ForwardBatch;
    try {
      batch = decode<ForwardBatch>(msg.data);
      if (batch.v !== WIRE_VERSION || !Array.isArray(batch.items)) throw new Error(`unknown batch version ${String(batch.v)}`);
    } catch (error) {
      this.log.warn({ err: error }, 'a forwarded batch could not be read; not answered');
      return;
    }
    const results = await Promise.all(batch.items.map((item) => decide(item)));
    msg.respond(encode({ results } satisfies ForwardReply));
  }

  private flush(owner: string): void {
    const queue = this.queues.get(owner);
    if (queue === undefined || queue.length === 0) return;
    this.queues.delete(owner);
    this.stats.batches++;
    this.stats.items += queue.length;
    const batch: ForwardBatch = { v: WIRE_VERSION, items: queue.map((waiting) => waiting.item) };
    this.nc
      .request(nodeSubject(owner), encode(batch), { timeout: this.timeoutMs })
      .then((reply) => {
        const { results } = decode<ForwardReply>(reply.data);
        for (let i = 0; i < queue.length; i++) queue[i]!.resolve(results[i] ?? unreachable(owner, 'the owner answered fewer items than it was sent'));
      })
      .catch((error: unknown) => {
        this.stats.failures++;
        const detail = String((error as Error)?.message ?? error);
        for (const waiting of queue) waiting.resolve(unreachable(owner, detail));
      });
  }
}

function unreachable(owner: string, why: string): ForwardResult {
  return { err: { code: 'owner_unavailable', detail: `the owner of this entity (node ${owner}) cannot be reached: ${why}`, retryAfterMs: 1000 } };
}
