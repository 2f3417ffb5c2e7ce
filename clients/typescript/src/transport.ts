/**
 * How the client reaches Tally: NATS (nats.ts) or HTTP (http.ts), behind one interface. A
 * transport sends one request and answers its decoded reply, or throws a TallyError:
 * `errorFromProblem` for a service error, `TimeoutError` when no answer came in time (the
 * request may have been carried out), `UnavailableError` when it reached no node (it was not).
 */
import type { ShardMap } from './shardMap.js';

/** The operations, named as the NATS API's subjects name them (`tally.v1.<operation>`). */
export type Operation = 'quota.consume' | 'quota.get' | 'quota.reserve' | 'quota.settle' | 'quota.release' | 'sessions.verify' | 'limiter.check' | 'usage.get';

export interface Transport {
  /** Items in one batched request, at most. */
  readonly maxItems: number;
  /** The shard map, for a transport that can send a request straight to a node (NATS); null otherwise. */
  readonly map: ShardMap | null;
  /**
   * Sends `body` for `operation`: to `node`'s own subjects when one is named (the node answers
   * `{moved: true}` for what it does not own), else to any node, which routes it.
   */
  request(operation: Operation, body: unknown, timeoutMs: number, node?: string): Promise<unknown>;
  close(): Promise<void>;
}
