/** `tally cluster undrain <node>`: withdraws the drain request, so placement gives the node shards again. */
import { NotDoneError } from './errors.js';
import { askNode, type Context, report } from './io.js';

export async function undrain({ nc, cluster, options }: Context, node: string): Promise<number> {
  // A drained node that has since left can still be undrained: its request outlives it.
  if (!cluster.requests.drained.has(node) && !cluster.members.some((member) => member.record.id === node))
    throw new NotDoneError(`no node "${node}" in this cluster`);
  await askNode(nc, { op: 'undrain', node });
  report(options, { node, drained: false });
  return 0;
}
