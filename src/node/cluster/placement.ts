/**
 * Where shards should live: rendezvous (highest random weight) hashing over the nodes that
 * may take shards, with a cap of about 1.1 × the average per node, and what to change to get
 * there from the current map. The coordinator calls this each round; it is a pure function
 * of its input, so every node computing it from the same map gets the same answer.
 *
 * - Shards with no live owner (never assigned, or their owner's lease ran out) are assigned
 *   at once, all of them: they are unserved until then.
 * - Shards whose live owner is not where they should be are moved a few at a time
 *   (`maxMoves` per round), those on nodes that are leaving or draining first, then those
 *   on nodes over the cap.
 */
import { placementWeight, SHARD_COUNT } from '../../shards/index.js';

export interface PlacementInput {
  /** Nodes that may take shards: live and not draining. */
  takers: readonly string[];
  /** Every node whose lease is live, takers or not: their shards are theirs until moved. */
  live: ReadonlySet<string>;
  /** Shard → its owner in the map now; a shard absent has none. */
  owners: ReadonlyMap<number, string>;
  /** Planned moves to start in this round, at most. */
  maxMoves: number;
  /** The cap, as a multiple of the average (default 1.1). */
  capFactor?: number;
  /** Shards an operator placed (`tally cluster move`): they stay on that node while it takes shards. */
  pins?: ReadonlyMap<number, string>;
}

export interface PlacementPlan {
  /** Where every shard should live. */
  target: Map<number, string>;
  /** Shards without a live owner, and the taker each goes to now. */
  assign: { shard: number; to: string }[];
  /** Planned moves to start now (bounded by `maxMoves`). */
  moves: { shard: number; from: string; to: string }[];
  /** Planned moves still wanted after these. */
  pending: number;
}

/** Each shard's takers, best first: the highest weight, then the id (weights do not tie in practice). */
function ranked(takers: readonly string[], shard: number): string[] {
  return takers
    .map((node) => ({ node, weight: placementWeight(node, shard) }))
    .sort((a, b) => (a.weight === b.weight ? (a.node < b.node ? -1 : 1) : a.weight > b.weight ? -1 : 1))
    .map((entry) => entry.node);
}

/** Where every shard should live, capped; empty when there is no taker. */
export function targetPlacement(takers: readonly string[], capFactor = 1.1): Map<number, string> {
  const target = new Map<number, string>();
  if (takers.length === 0) return target;
  const sorted = [...new Set(takers)].sort();
  const cap = Math.ceil((capFactor * SHARD_COUNT) / sorted.length);
  const load = new Map(sorted.map((node) => [node, 0]));
  // Shards in a fixed order; each takes its best taker that is under the cap.
  for (let shard = 0; shard < SHARD_COUNT; shard++) {
    const choice = ranked(sorted, shard).find((node) => load.get(node)! < cap)!;
    target.set(shard, choice);
    load.set(choice, load.get(choice)! + 1);
  }
  return target;
}

export function planPlacement(input: PlacementInput): PlacementPlan {
  const target = targetPlacement(input.takers, input.capFactor);
  for (const [shard, node] of input.pins ?? []) if (input.takers.includes(node) && target.has(shard)) target.set(shard, node);
  const plan: PlacementPlan = { target, assign: [], moves: [], pending: 0 };
  if (target.size === 0) return plan;
  const takers = new Set(input.takers);
  const load = new Map<string, number>();
  for (const owner of input.owners.values()) load.set(owner, (load.get(owner) ?? 0) + 1);
  const cap = Math.ceil(((input.capFactor ?? 1.1) * SHARD_COUNT) / takers.size);

  const wanted: { shard: number; from: string; to: string; rank: number }[] = [];
  for (let shard = 0; shard < SHARD_COUNT; shard++) {
    const to = target.get(shard)!;
    const from = input.owners.get(shard);
    if (from === undefined || !input.live.has(from)) {
      plan.assign.push({ shard, to });
    } else if (from !== to) {
      // Off a node that takes no shards first, then off one over the cap, then the rest.
      const rank = !takers.has(from) ? 0 : load.get(from)! > cap ? 1 : 2;
      wanted.push({ shard, from, to, rank });
    }
  }
  wanted.sort((a, b) => a.rank - b.rank || a.shard - b.shard);
  plan.moves = wanted.slice(0, Math.max(0, input.maxMoves)).map(({ shard, from, to }) => ({ shard, from, to }));
  plan.pending = wanted.length - plan.moves.length;
  return plan;
}
