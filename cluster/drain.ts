/**
 * `tally cluster drain <node>`: asks that the node hold no shards (key `drain.<node>`, which a node writes) and,
 * unless --no-wait, waits until the coordinator has moved every one off it. Drain twice is
 * drain once: the request is the same key put again.
 */
import { NotDoneError } from './errors.js';
import { askNode, type Context, report, waitForMoves } from './io.js';

export async function drain(context: Context, node: string): Promise<number> {
  const { nc, cluster, options, signal } = context;
  if (!cluster.members.some((member) => member.record.id === node))
    throw new NotDoneError(`no node "${node}" in this cluster (tally cluster nodes lists them)`);
  const others = cluster.live().filter((member) => member.record.id !== node && member.status === 'active');
  if (others.length === 0) throw new NotDoneError(`refused: no other active node could take the shards of "${node}"`);
  await askNode(nc, { op: 'drain', node });
  const total = cluster.map.summary().byNode[node] ?? 0;
  if (!options.wait) {
    report(options, { node, drained: false, requested: true, shards: total });
    return 0;
  }
  const left = await waitForMoves(context, total, (map) => map.summary().byNode[node] ?? 0, `draining ${node}`);
  report(options, { node, drained: left === 0, shards_moved: total - left, left });
  if (left > 0)
    throw new NotDoneError(
      signal.aborted ? `interrupted with ${left} shards left on ${node} (they keep moving)` : `${left} shards still on ${node} after ${options.timeoutS} s`,
    );
  return 0;
}
