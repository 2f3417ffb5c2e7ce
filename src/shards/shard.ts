/**
 * One of the SHARD_COUNT slices of the entity space. A shard holds its active actors and the
 * epoch under which this node owns it: every written-behind row carries that epoch, and
 * Postgres refuses rows whose epoch is no longer current (the fence).
 *
 * - `owned`: served here under `epoch`.
 * - `not_owned`: another node's, or nobody's yet.
 * - `lost`: this node served it, then the fence showed a newer epoch (another node claimed
 *   it). It is not served until this node claims it again.
 *
 * Its actors are a list linked through the actors themselves (`shardPrev`, `shardNext`): the
 * runtime finds an actor by key in its own map, and the shard only ever walks its actors
 * (hand-offs, a lost shard) or asks whether one is still held. A Map per shard as well had
 * cost about 45 bytes of heap per active actor; two links cost 16.
 */
import type { Actor } from './actor.js';
import type { ActorRuntime } from './runtime.js';

export type ShardStatus = 'owned' | 'not_owned' | 'lost';

export class Shard {
  status: ShardStatus = 'not_owned';
  epoch = 0;
  /** Actors held, newest first. */
  private first: Actor | null = null;

  constructor(
    readonly index: number,
    readonly runtime: ActorRuntime,
  ) {}

  get serving(): boolean {
    return this.status === 'owned';
  }

  /** Whether `actor` is held here: false once it was dropped (passivated, evicted, its shard given up). */
  holds(actor: Actor): boolean {
    return actor.shard === this && (actor.shardPrev !== null || this.first === actor);
  }

  /** Holds `actor` (one of this shard's); holding it twice changes nothing. */
  add(actor: Actor): void {
    if (actor.shard !== this || this.holds(actor)) return;
    actor.shardPrev = null;
    actor.shardNext = this.first;
    if (this.first !== null) this.first.shardPrev = actor;
    this.first = actor;
  }

  remove(actor: Actor): void {
    if (!this.holds(actor)) return;
    if (actor.shardPrev === null) this.first = actor.shardNext;
    else actor.shardPrev.shardNext = actor.shardNext;
    if (actor.shardNext !== null) actor.shardNext.shardPrev = actor.shardPrev;
    actor.shardPrev = null;
    actor.shardNext = null;
  }

  /** The actors held now. Removing the actor just returned, as a caller may, ends nothing. */
  *actors(): IterableIterator<Actor> {
    for (let actor = this.first; actor !== null; ) {
      const next: Actor | null = actor.shardNext;
      yield actor;
      actor = next;
    }
  }
}
