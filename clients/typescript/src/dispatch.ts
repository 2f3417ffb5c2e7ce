/**
 * Sending calls: batched where the API takes batches (`quota.consume`, `quota.get`), one by
 * one otherwise, and in both cases to the owner of the call's user when the transport has a
 * shard map.
 *
 * Auto-batching: calls made in the same turn of the event loop (or, with `windowMs`, within
 * that many ms) are collected, grouped by operation, owner and timeout, and each group goes
 * as one message of up to `maxBatch` items (1000 by default). Each call still resolves on its own,
 * with its own item of the reply. A message waits as long as its latest call may: a call
 * made earlier in the same turn may take that much longer than its timeout (a turn is a
 * few ms at most), which costs no timer per call.
 *
 * Sent again, within the call's deadline:
 * - an item its node answered `moved` for (the node does not own the user now; nothing was
 *   done), after the map is fetched again;
 * - a call that reached no node (nothing was done), through any node;
 * - a call whose answer did not come in time, only when sending it twice does no harm (a
 *   read, or a consume with an idempotency key, which Tally answers once).
 * After MAX_ROUTED tries routed by the map, a call goes to any node, which forwards it.
 */
import { errorFromProblem, isProblem, TallyError, TimeoutError, UnavailableError } from './errors.js';
import type { Operation, Transport } from './transport.js';

/** Tries routed by the shard map; later ones go to any node. */
const MAX_ROUTED = 2;
/** Sends of one call, at most. */
const MAX_SENDS = 5;

export interface Call {
  operation: Operation;
  /** The item (or the whole body, for an operation that takes no batch) as the wire spells it. */
  item: Record<string, unknown>;
  /** The key whose shard's owner decides the call (a user id); null: any node. */
  routeKey: string | null;
  /** How long the call may take in all, in ms. */
  timeoutMs: number;
  /** Whether it may be sent again after an answer that did not come in time. */
  safe: boolean;
}

/** A call on its way: one shape for all (a spread copy of the call was a tenth of the client's time). */
class Pending {
  sends = 0;
  done = false;
  readonly deadline: number;

  constructor(
    readonly operation: Operation,
    readonly item: Record<string, unknown>,
    readonly routeKey: string | null,
    readonly timeoutMs: number,
    readonly safe: boolean,
    readonly resolve: (answer: Record<string, unknown>) => void,
    readonly reject: (error: unknown) => void,
  ) {
    this.deadline = performance.now() + timeoutMs;
  }
}

const BATCHED = new Set<Operation>(['quota.consume', 'quota.get']);

export interface DispatchStats {
  /** Messages sent (a batch is one). */
  messages: number;
  /** Calls' items sent (a resend counts again). */
  items: number;
  /** Items a node answered `moved` for. */
  moved: number;
}

export class Dispatcher {
  private queue: Pending[] = [];
  private scheduled = false;
  readonly stats: DispatchStats = { messages: 0, items: 0, moved: 0 };

  constructor(
    private readonly transport: Transport,
    private readonly windowMs: number,
    private readonly maxBatch: number,
  ) {}

  /** Sends `call` (batched with others where its operation allows); its reply's item, or the error. */
  call(call: Call): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.enqueue(new Pending(call.operation, call.item, call.routeKey, call.timeoutMs, call.safe, resolve, reject));
    });
  }

  private enqueue(call: Pending): void {
    if (!BATCHED.has(call.operation)) {
      void this.sendOne(call);
      return;
    }
    this.queue.push(call);
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.windowMs > 0) setTimeout(this.flush, this.windowMs);
    else setImmediate(this.flush);
  }

  /** Every call collected since the last flush: grouped by operation and owner, each group sent in messages of `maxItems`. */
  private readonly flush = (): void => {
    this.scheduled = false;
    const calls = this.queue;
    this.queue = [];
    const groups = new Map<string, { operation: Operation; node: string | undefined; calls: Pending[] }>();
    for (const call of calls) {
      const node = this.ownerOf(call);
      const key = `${call.operation} ${node ?? ''} ${call.timeoutMs}`;
      let group = groups.get(key);
      if (group === undefined) {
        group = { operation: call.operation, node, calls: [] };
        groups.set(key, group);
      }
      group.calls.push(call);
    }
    const max = this.maxBatch;
    for (const { operation, node, calls: grouped } of groups.values()) {
      for (let i = 0; i < grouped.length; i += max) void this.sendBatch(operation, node, grouped.slice(i, i + max));
    }
  };

  private ownerOf(call: Pending): string | undefined {
    const map = this.transport.map;
    if (map === null || call.routeKey === null || call.sends >= MAX_ROUTED) return undefined;
    return map.ownerOf(call.routeKey);
  }

  private async sendBatch(operation: Operation, node: string | undefined, calls: Pending[]): Promise<void> {
    const now = performance.now();
    let deadline = 0;
    const live: Pending[] = [];
    for (const call of calls) {
      if (call.done) continue;
      if (call.deadline <= now) {
        this.fail(call, timedOut(call));
        continue;
      }
      live.push(call);
      deadline = Math.max(deadline, call.deadline);
    }
    if (live.length === 0) return;
    this.stats.messages++;
    this.stats.items += live.length;
    for (const call of live) call.sends++;
    let reply: { results?: unknown };
    try {
      reply = (await this.transport.request(operation, { items: live.map((call) => call.item) }, deadline - now, node)) as { results?: unknown };
    } catch (error) {
      for (const call of live) this.failed(call, error);
      return;
    }
    const results = Array.isArray(reply.results) ? reply.results : [];
    for (let i = 0; i < live.length; i++) this.answered(live[i]!, results[i]);
  }

  private async sendOne(call: Pending): Promise<void> {
    const now = performance.now();
    if (call.deadline <= now) {
      this.fail(call, timedOut(call));
      return;
    }
    this.stats.messages++;
    this.stats.items++;
    const node = this.ownerOf(call);
    call.sends++;
    let answer: unknown;
    try {
      answer = await this.transport.request(call.operation, call.item, call.deadline - now, node);
    } catch (error) {
      this.failed(call, error);
      return;
    }
    this.answered(call, answer);
  }

  /** One item's answer: its result, its error, or `moved`. */
  private answered(call: Pending, result: unknown): void {
    if (call.done) return;
    if (typeof result !== 'object' || result === null) {
      this.fail(call, new UnavailableError('unreadable', 0, 'Tally’s answer has no result for this call'));
      return;
    }
    const answer = result as Record<string, unknown>;
    if (answer.moved === true) {
      this.stats.moved++;
      this.sendAgain(call, new UnavailableError('moved', 0, 'the user’s shard kept moving; no node took the call'));
      return;
    }
    if (typeof answer.error === 'object' && answer.error !== null) {
      this.fail(call, errorFor(answer.error));
      return;
    }
    call.done = true;
    call.resolve(answer);
  }

  /** The whole message failed: sent again where that is safe, else the error. */
  private failed(call: Pending, error: unknown): void {
    if (error instanceof UnavailableError || (error instanceof TimeoutError && call.safe)) this.sendAgain(call, error);
    else this.fail(call, error);
  }

  private sendAgain(call: Pending, error: unknown): void {
    if (call.done) return;
    if (call.sends >= MAX_SENDS || call.deadline - performance.now() < 1) {
      this.fail(call, error);
      return;
    }
    const map = this.transport.map;
    if (map === null) this.enqueue(call);
    else void map.refresh().then(() => this.enqueue(call));
  }

  private fail(call: Pending, error: unknown): void {
    if (call.done) return;
    call.done = true;
    call.reject(error);
  }
}

function timedOut(call: Pending): TimeoutError {
  return new TimeoutError('timeout', 0, `Tally did not answer ${call.operation} in time`);
}

function errorFor(problem: object): TallyError {
  return isProblem(problem) ? errorFromProblem(problem) : new TallyError('unknown', 0, 'Tally answered an error this client cannot read');
}
