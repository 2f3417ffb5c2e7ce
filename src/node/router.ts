/**
 * The router of a single node: every entity's owner is this node, so requests go straight to
 * the local services. A consume that finds its owner unavailable (its shard not served, the
 * database down while loading) gets the fail-open answer where its tier allows it, for a
 * credential verified here on the slow path within the last minute (and only a user whose
 * tier fails open has its credentials recorded).
 */
import type { Router } from '../api/index.js';
import type { LimiterDecision, LimiterRequest, LimiterService, UserOpName, UserOps, UserRequest, UserService } from '../shards/index.js';
import type { FailOpen } from './failOpen.js';

export class LocalRouter implements Router {
  constructor(
    private readonly users: UserService,
    private readonly limiters: LimiterService,
    private readonly failOpen: FailOpen,
    private readonly clock: () => number = Date.now,
  ) {}

  user<K extends UserOpName>(request: UserRequest<K>): Promise<UserOps[K]['result']> {
    // The slow path only: here the owner's acceptance of the credential is recorded for
    // fail-open (failOpen.ts); `tryUser` stays free of it.
    const stamp = this.failOpen.stamp();
    const answer = this.users.execute(request, this.clock()).then((result) => {
      if (this.users.mayFailOpen(request.userId)) this.failOpen.verified(request, stamp);
      return result;
    });
    if (request.op !== 'quota.consume') return answer;
    return answer.catch((error: unknown) => this.failOpen.consume(error, request as UserRequest<'quota.consume'>)) as Promise<UserOps[K]['result']>;
  }

  tryUser<K extends UserOpName>(request: UserRequest<K>): UserOps[K]['result'] | undefined {
    return this.users.tryExecute(request, this.clock());
  }

  limiter(request: LimiterRequest): Promise<LimiterDecision> {
    return this.limiters.perform(request, this.clock());
  }

  /** A single node owns every entity. */
  owns(): boolean {
    return true;
  }
}
