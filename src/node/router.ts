/**
 * Every request for an entity goes through the router, which sends it to the entity's
 * owner. On a single node the owner is always this node, so the router calls the local
 * services directly; the cluster router adds forwarding over NATS behind the same interface.
 */
import type { LimiterDecision, LimiterRequest, LimiterService, UserOpName, UserOps, UserRequest, UserService } from '../shards/index.js';
import type { FailOpen } from './failOpen.js';

export interface Router {
  user<K extends UserOpName>(request: UserRequest<K>): Promise<UserOps[K]['result']>;
  /**
   * The same request answered synchronously, when its owner is this node, the actor is in
   * memory and the operation needs nothing from the database; otherwise undefined.
   */
  tryUser<K extends UserOpName>(request: UserRequest<K>): UserOps[K]['result'] | undefined;
  limiter(request: LimiterRequest): Promise<LimiterDecision>;
}

export type Clock = () => number;

export class LocalRouter implements Router {
  constructor(
    private readonly users: UserService,
    private readonly limiters: LimiterService,
    private readonly failOpen: FailOpen,
    private readonly clock: Clock = Date.now,
  ) {}

  user<K extends UserOpName>(request: UserRequest<K>): Promise<UserOps[K]['result']> {
    const answer = this.users.execute(request, this.clock());
    if (request.op !== 'quota.consume') return answer;
    return answer.catch((error: unknown) => this.failOpen.consume(error, request as UserRequest<'quota.consume'>)) as Promise<UserOps[K]['result']>;
  }

  tryUser<K extends UserOpName>(request: UserRequest<K>): UserOps[K]['result'] | undefined {
    return this.users.tryExecute(request, this.clock());
  }

  limiter(request: LimiterRequest): Promise<LimiterDecision> {
    return this.limiters.perform(request, this.clock());
  }
}
