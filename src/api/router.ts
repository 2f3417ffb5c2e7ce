/**
 * Every request for an entity goes through a router, which sends it to the entity's owner.
 * Transports (HTTP, NATS) and accounts see only this interface; the node chooses the
 * implementation: on a single node the owner is always this node, and in a cluster the
 * router forwards to the owner over NATS behind the same interface.
 */
import type { Credential, LimiterDecision, LimiterRequest, UserOpName, UserOps, UserRequest } from '../shards/index.js';

export interface Router {
  user<K extends UserOpName>(request: UserRequest<K>): Promise<UserOps[K]['result']>;
  /**
   * The same request answered synchronously, when its owner is this node, the actor is in
   * memory and the operation needs nothing from the database; otherwise undefined.
   */
  tryUser<K extends UserOpName>(request: UserRequest<K>): UserOps[K]['result'] | undefined;
  limiter(request: LimiterRequest): Promise<LimiterDecision>;
  /**
   * Whether this node owns the entity now, as the shard map says (a user id, or a limiter's
   * entity key): the NATS API's direct subjects answer `moved` for the entities it does not.
   */
  owns(entityKey: string): boolean;
}

/** Who a request acts for, and the credential it brought (checked by the owner). */
export interface Caller {
  userId: string;
  credential: Credential;
}
