/**
 * `tally cluster move <shard> <node>`: pins the shard to the node (key `pin.<shard>`, which a node writes); the
 * coordinator moves it there by a planned hand-off and keeps it there until a rebalance
 * deletes the pin. Waits until the node owns it.
 */
import { NotDoneError } from './errors.js';
import { askNode, type Context, report, waitForMoves } from './io.js';

export async function move(context: Context, shard: number, node: string): Promise<number> {
  const { nc, cluster, options, signal } = context;
  const member = cluster.live().find((one) => one.record.id === node);
  if (member === undefined) throw new NotDoneError(`no live node "${node}" in this cluster (tally cluster nodes lists them)`);
  if (member.status !== 'active') throw new NotDoneError(`refused: node "${node}" is ${member.status} and takes no shards`);
  const from = cluster.map.owner(shard) ?? null;
  await askNode(nc, { op: 'pin', shard, to: node });
  const left = await waitForMoves(
    context,
    1,
    (map) => {
      const entry = map.get(shard)?.entry;
      return entry?.owner === node && entry.status === 'owned' ? 0 : 1;
    },
    `moving shard ${shard}`,
  );
  report(options, { shard, from, to: node, done: left === 0 });
  if (left > 0)
    throw new NotDoneError(
      signal.aborted ? `interrupted: shard ${shard} is still asked to move to ${node}` : `shard ${shard} not on ${node} after ${options.timeoutS} s`,
    );
  return 0;
}
