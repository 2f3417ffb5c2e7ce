/**
 * What a node does with one shard, as data and a pure function. The cluster node
 * (clusterNode.ts) keeps one `ShardActivity` per shard, and at every round asks `nextStep`
 * what to do given that activity, whether the shard is served here now, and the shard map's
 * entry. It then carries the step out and records the new activity. Every transition of
 * docs/architecture.md ("A shard's life on one node") is one branch below, testable without
 * NATS or a database.
 *
 * Whether the shard is served here is not part of the activity: the actor runtime owns it
 * (`Shard.status`), because the fence and the lease can take a shard away between rounds.
 */
import type { MapEntry } from './shardMap.js';

/** What this node is doing with a shard, beyond serving it or not. */
export type ShardActivity =
  /** Nothing in progress. */
  | { readonly kind: 'steady' }
  /** The fence claim (epoch bump in Postgres) is in flight; served once it returns, if the map still agrees. */
  | { readonly kind: 'claiming' }
  /** Not admitting: waiting for requests in flight, flushing, then handing the map entry to `to`. */
  | { readonly kind: 'handingOff'; readonly to: string }
  /**
   * The hand-off's compare-and-set succeeded, replacing map revision `revision`. Until the
   * watch brings that write, the local copy still shows the shard moving from here; this
   * keeps the next round from handing it off again.
   */
  | { readonly kind: 'handedOff'; readonly revision: number };

export const STEADY: ShardActivity = Object.freeze({ kind: 'steady' });
export const CLAIMING: ShardActivity = Object.freeze({ kind: 'claiming' });

export interface ShardSituation {
  activity: ShardActivity;
  /** Served here now (the runtime's `Shard.serving`). */
  serving: boolean;
  /** The shard map's entry, as this node's copy has it. */
  map: MapEntry | undefined;
}

export type ShardStep =
  | { readonly kind: 'none' }
  /** The map gives the shard to this node and it is not served: claim it in the fence. */
  | { readonly kind: 'claim' }
  /** The map moves the shard away from this node: stop admitting and hand it to `to`. */
  | { readonly kind: 'handOff'; readonly to: string }
  /**
   * The map gives a shard this node serves to another node (this node was taken for dead):
   * stop serving it at once. The new owner's claim fences any write this node attempts.
   */
  | { readonly kind: 'drop'; readonly owner: string | null }
  /** A finished hand-off the map has moved past: forget it. */
  | { readonly kind: 'forget' };

const NONE: ShardStep = Object.freeze({ kind: 'none' });
const CLAIM: ShardStep = Object.freeze({ kind: 'claim' });
const FORGET: ShardStep = Object.freeze({ kind: 'forget' });

/**
 * The one step to take for a shard now. `me` is this node's id; `mayClaim` is false while
 * the node's lease is not valid (a claim then waits for the next round).
 */
export function nextStep(me: string, mayClaim: boolean, { activity, serving, map }: ShardSituation): ShardStep {
  // A claim or a hand-off in flight decides the shard's next state when it returns.
  if (activity.kind === 'claiming' || activity.kind === 'handingOff') return NONE;
  if (map === undefined || map.entry.owner !== me) {
    if (serving) return { kind: 'drop', owner: map?.entry.owner ?? null };
    return activity.kind === 'handedOff' ? FORGET : NONE;
  }
  if (map.entry.status === 'moving') {
    if (activity.kind === 'handedOff' && activity.revision === map.revision) return NONE;
    return { kind: 'handOff', to: map.entry.to! };
  }
  if (!serving) return mayClaim ? CLAIM : NONE;
  return activity.kind === 'handedOff' ? FORGET : NONE;
}

/** Whether a claim that has just returned may be served: the map still gives the shard to this node, and does not move it. */
export function claimStands(me: string, map: MapEntry | undefined): boolean {
  return map?.entry.owner === me && map.entry.status === 'owned';
}

/** Whether a hand-off about to release its shard still matches the map: the entry still moves the shard to `to`. */
export function handOffStands(to: string, map: MapEntry | undefined): boolean {
  return map?.entry.status === 'moving' && map.entry.to === to;
}
