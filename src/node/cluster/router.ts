/**
 * The router of a cluster node: the same interface the transports use on a single node,
 * with the owner found in the shard map and reached over NATS (forwarder.ts) when it is
 * another node.
 */
import type { Router } from '../../api/index.js';
import {
  type ActorRuntime,
  type LimiterDecision,
  type LimiterRequest,
  LimiterService,
  OwnerUnavailableError,
  type QuotaDecision,
  shardOf,
  type UserOpName,
  type UserOps,
  type UserRequest,
  type UserService,
} from '../../shards/index.js';
import { type ForwardItem, type ForwardResult, fromWireError, toWireError } from './wire.js';

/**
 * The answer for a consume whose owner could not be reached: degraded where the tier allows
 * and the owner accepted the credential lately, else the error again (src/node/failOpen.ts).
 */
export interface FailOpenPolicy {
  consume(error: unknown, request: UserRequest<'quota.consume'>): Promise<QuotaDecision>;
  /** Taken as a request begins, for `verified`. */
  stamp(): number;
  /** The owner answered `request`: it accepted the credential. */
  verified(request: UserRequest, stamp: number): void;
}

/** Where the cluster router learns owners and reaches them; set once the node has joined. */
export interface ClusterRouting {
  nodeId: string;
  owner(shard: number): string | undefined;
  forward(owner: string, item: ForwardItem): Promise<ForwardResult>;
}

/**
 * Tries after a `moved` answer or while a shard is being claimed here, and the pause before
 * each: 1.4 s in all. A planned move leaves its shard without a deciding owner from the
 * moment the old owner sees it until the new one has claimed it: a third of a second in a
 * drain of 260 shards (32 moves in flight) on two idle cores, twice that when they are busy
 * (timed in the hand-off test). A request waits that out rather than fail.
 */
const RETRY_DELAYS_MS = [5, 20, 50, 100, 200, 250, 250, 250, 250];

/**
 * Tries when nobody listens on the owner's subject (`unheard`): the first five pauses, 0.4 s.
 * An owner that has just subscribed or left is named or replaced in the map by then; one that
 * died is named until its lease runs out, and its users are answered (503, or fail-open)
 * without waiting out a move's budget for each request.
 */
const UNHEARD_TRIES = 5;

/**
 * The router of a cluster node: a request whose shard this node owns runs here; any other
 * goes to its owner (forwarder.ts), and comes back as the answer, or the error, the owner
 * gave. A `moved` answer, or a shard the map gives this node that it has not claimed yet,
 * is tried again after a short pause with the map as it is then (a few times, about 1.4 s
 * in all); the caller sees a normal answer, or an unavailable owner.
 */
export class ClusterRouter implements Router {
  private routing: ClusterRouting | null = null;

  constructor(
    private readonly runtime: ActorRuntime,
    private readonly users: UserService,
    private readonly limiters: LimiterService,
    private readonly failOpen: FailOpenPolicy,
    private readonly clock: () => number = Date.now,
  ) {}

  attach(routing: ClusterRouting): void {
    this.routing = routing;
  }

  user<K extends UserOpName>(request: UserRequest<K>): Promise<UserOps[K]['result']> {
    const answer = this.route(request.userId, { kind: 'user', request }, () => this.users.execute(request, this.clock())) as Promise<UserOps[K]['result']>;
    if (request.op !== 'quota.consume') return answer;
    return answer.catch((error: unknown) => this.failOpen.consume(error, request as UserRequest<'quota.consume'>)) as Promise<UserOps[K]['result']>;
  }

  tryUser<K extends UserOpName>(request: UserRequest<K>): UserOps[K]['result'] | undefined {
    if (this.routing === null || this.routing.owner(shardOf(request.userId)) !== this.routing.nodeId) return undefined;
    return this.users.tryExecute(request, this.clock());
  }

  limiter(request: LimiterRequest): Promise<LimiterDecision> {
    const key = LimiterService.entityKey(request.namespace, request.key);
    return this.route(key, { kind: 'limiter', request }, () => this.limiters.perform(request, this.clock())) as Promise<LimiterDecision>;
  }

  owns(entityKey: string): boolean {
    return this.routing !== null && this.routing.owner(shardOf(entityKey)) === this.routing.nodeId;
  }

  /** Decides a forwarded item here: `moved` when this node does not serve its shard now. */
  async decide(item: ForwardItem): Promise<ForwardResult> {
    const key = item.kind === 'user' ? item.request.userId : LimiterService.entityKey(item.request.namespace, item.request.key);
    if (!this.deciding(key)) return { moved: true };
    try {
      if (item.kind === 'limiter') return { ok: await this.limiters.perform(item.request, this.clock()) };
      const ok = await this.users.execute(item.request, this.clock());
      // The sender records the credential for fail-open unless told the user's tier is strict.
      return this.users.mayFailOpen(key) ? { ok } : { ok, strict: true };
    } catch (error) {
      if (error instanceof OwnerUnavailableError && !this.deciding(key)) return { moved: true };
      return { err: toWireError(error) };
    }
  }

  /** Whether this node decides for `key` now: it serves the shard and may decide at all. */
  private deciding(key: string): boolean {
    return this.runtime.shardFor(key).serving && this.runtime.mayDecide();
  }

  /**
   * Runs `item` here or at its owner. An answer to a user's request (the owner accepted its
   * credential) is recorded for fail-open: here, on the asynchronous path, never in `tryUser`,
   * and only where the user's tier fails open (an owner says `strict` when it does not; an
   * owner of an earlier build never says it, and its answers are recorded as before).
   */
  private async route(entityKey: string, item: ForwardItem, local: () => Promise<unknown>): Promise<unknown> {
    const shard = shardOf(entityKey);
    const stamp = this.failOpen.stamp();
    for (let attempt = 0; ; attempt++) {
      const routing = this.routing;
      const owner = routing?.owner(shard);
      const retry = attempt < RETRY_DELAYS_MS.length;
      if (routing !== null && owner === routing.nodeId) {
        try {
          const answer = await local();
          if (item.kind === 'user' && this.users.mayFailOpen(entityKey)) this.failOpen.verified(item.request, stamp);
          return answer;
        } catch (error) {
          // Ours in the map but not claimed yet (or just handed off), or this node's lease is
          // being renewed or checked: wait for the claim, or for the map to name the owner.
          if (!(error instanceof OwnerUnavailableError) || (this.runtime.shards[shard]!.serving && this.runtime.mayDecide()) || !retry) throw error;
        }
      } else if (routing !== null && owner !== undefined) {
        const result = await routing.forward(owner, item);
        if ('ok' in result) {
          if (item.kind === 'user' && result.strict !== true) this.failOpen.verified(item.request, stamp);
          return result.ok;
        }
        if ('err' in result) throw fromWireError(result.err);
        if (result.unheard === true && attempt >= UNHEARD_TRIES)
          throw new OwnerUnavailableError(`the owner of shard ${shard} is not answering; try again shortly`);
        if (!retry) throw new OwnerUnavailableError(`shard ${shard} is moving; try again shortly`);
      } else if (!retry) {
        throw new OwnerUnavailableError(`shard ${shard} has no owner yet`);
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[attempt]));
    }
  }
}
