/**
 * One of the SHARD_COUNT slices of the entity space. A shard holds its active actors by key
 * and the epoch under which this node owns it: every written-behind row carries that epoch,
 * and Postgres refuses rows whose epoch is no longer current (the fence).
 *
 * - `owned`: served here under `epoch`.
 * - `not_owned`: another node's, or nobody's yet.
 * - `lost`: this node served it, then the fence showed a newer epoch (another node claimed
 *   it). It is not served until this node claims it again.
 */
import type { Actor } from './actor.js';
import type { ActorRuntime } from './runtime.js';

export type ShardStatus = 'owned' | 'not_owned' | 'lost';

export class Shard {
  readonly actors = new Map<string, Actor>();
  status: ShardStatus = 'not_owned';
  epoch = 0;

  constructor(
    readonly index: number,
    readonly runtime: ActorRuntime,
  ) {}

  get serving(): boolean {
    return this.status === 'owned';
  }
}
