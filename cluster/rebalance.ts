/**
 * `tally cluster rebalance [--dry-run]`: the moves that bring the map to its placement,
 * undoing the moves an operator made with `move`. The coordinator plans the same moves on
 * its own once the pins are gone, so this deletes them and waits; it writes no moves itself.
 */
import { planPlacement } from '../src/node/cluster/index.js';
import { initHashing, SHARD_COUNT } from '../src/shards/index.js';
import { NotDoneError } from './errors.js';
import { askNode, type Context, printJson, printTable, waitForMoves } from './io.js';

export async function rebalance(context: Context): Promise<number> {
  const { nc, cluster, options, signal } = context;
  await initHashing();
  const live = cluster.live();
  const takers = live.filter((member) => member.status === 'active').map((member) => member.record.id);
  const plan = planPlacement({ takers, live: new Set(live.map((member) => member.record.id)), owners: cluster.map.owners(), maxMoves: SHARD_COUNT });
  const moves = [...plan.assign.map(({ shard, to }) => ({ shard, from: null as string | null, to })), ...plan.moves];
  if (options.json && options.dryRun) printJson({ moves });
  else if (!options.json) {
    process.stdout.write(moves.length === 0 ? 'the map is where placement wants it: nothing to move\n' : `${moves.length} moves:\n`);
    if (moves.length > 0 && moves.length <= 64) printTable([['SHARD', 'FROM', 'TO'], ...moves.map((m) => [m.shard, m.from ?? '-', m.to])]);
  }
  if (options.dryRun || moves.length === 0) {
    if (options.json && !options.dryRun) printJson({ moves, done: true });
    return 0;
  }
  // Moves made by `move` are undone: every pin goes (those set since this command read them
  // too), and the coordinator carries the plan out itself, 32 moves in flight at a time.
  if (cluster.requests.pins.size > 0) await askNode(nc, { op: 'unpin-all' });
  const target = plan.target;
  const left = await waitForMoves(
    context,
    moves.length,
    (map) => {
      let off = 0;
      for (const { shard } of moves) if (map.owner(shard) !== target.get(shard) || map.get(shard)?.entry.status !== 'owned') off++;
      return off;
    },
    'rebalancing',
  );
  if (options.json) printJson({ moves, done: left === 0, left });
  if (left > 0)
    throw new NotDoneError(signal.aborted ? `interrupted with ${left} moves to go (they go on)` : `${left} moves not done after ${options.timeoutS} s`);
  return 0;
}
