import { beforeAll, describe, expect, it } from 'vitest';
import { initHashing, SHARD_COUNT } from '../../shards/index.js';
import { planPlacement, targetPlacement } from './placement.js';

beforeAll(() => initHashing());

const counts = (map: ReadonlyMap<number, string>) => {
  const byNode = new Map<string, number>();
  for (const node of map.values()) byNode.set(node, (byNode.get(node) ?? 0) + 1);
  return byNode;
};
const changed = (a: ReadonlyMap<number, string>, b: ReadonlyMap<number, string>) => [...a.keys()].filter((shard) => a.get(shard) !== b.get(shard));

describe('shard placement', () => {
  it('gives every shard to one of three nodes, each within 10 % of the average, whatever their order', () => {
    const target = targetPlacement(['n1', 'n2', 'n3']);
    expect(target.size).toBe(SHARD_COUNT);
    for (const count of counts(target).values()) expect(Math.abs(count - SHARD_COUNT / 3)).toBeLessThanOrEqual(0.1 * (SHARD_COUNT / 3));
    expect(targetPlacement(['n3', 'n1', 'n2'])).toEqual(target);
  });

  it('moves about a quarter of the shards, all to the newcomer, when a fourth node joins', () => {
    const three = targetPlacement(['n1', 'n2', 'n3']);
    const four = targetPlacement(['n1', 'n2', 'n3', 'n4']);
    const moved = changed(three, four);
    expect(moved.length).toBeGreaterThan(SHARD_COUNT / 4 - 40);
    expect(moved.length).toBeLessThan(SHARD_COUNT / 4 + 40);
    expect(moved.every((shard) => four.get(shard) === 'n4')).toBe(true);
  });

  it('moves only the shards of a node that goes', () => {
    const four = targetPlacement(['n1', 'n2', 'n3', 'n4']);
    const three = targetPlacement(['n1', 'n2', 'n4']);
    const moved = changed(four, three);
    expect(moved.every((shard) => four.get(shard) === 'n3')).toBe(true);
  });

  it('assigns every shard without a live owner at once, and bounds the planned moves', () => {
    const owners = targetPlacement(['n1', 'n2', 'n3']);
    // n3 died; n4 joined.
    const plan = planPlacement({ takers: ['n1', 'n2', 'n4'], live: new Set(['n1', 'n2', 'n4']), owners, maxMoves: 16 });
    const orphans = [...owners].filter(([, node]) => node === 'n3').map(([shard]) => shard);
    expect(plan.assign.map((a) => a.shard)).toEqual(orphans);
    expect(plan.assign.every((a) => plan.target.get(a.shard) === a.to)).toBe(true);
    expect(plan.moves).toHaveLength(16);
    expect(plan.moves.every((m) => m.to === 'n4' && m.from !== 'n3')).toBe(true);
    expect(plan.pending).toBe(changed(owners, plan.target).length - orphans.length - 16);
  });

  it('moves shards off a draining node first, and none onto it', () => {
    const owners = targetPlacement(['n1', 'n2', 'n3']);
    const plan = planPlacement({ takers: ['n1', 'n2'], live: new Set(['n1', 'n2', 'n3']), owners, maxMoves: 1000 });
    expect(plan.assign).toEqual([]);
    expect(plan.moves.every((m) => m.from === 'n3')).toBe(true);
    expect(plan.moves).toHaveLength(counts(owners).get('n3')!);
    expect([...plan.target.values()]).not.toContain('n3');
  });

  it('plans nothing when the map is where it should be, and nothing without a taker', () => {
    const owners = targetPlacement(['n1', 'n2']);
    expect(planPlacement({ takers: ['n2', 'n1'], live: new Set(['n1', 'n2']), owners, maxMoves: 8 })).toMatchObject({ assign: [], moves: [], pending: 0 });
    expect(planPlacement({ takers: [], live: new Set(), owners, maxMoves: 8 })).toMatchObject({ assign: [], moves: [] });
  });
});
