/**
 * `tally cluster shards [--node N]`: every shard with its owner, the epoch it is served
 * under and its status: `served` (its owner answers with an epoch for it), `claiming` (the
 * map gives it an owner that does not serve it yet), `moving to B` or `unassigned`.
 */
import { readEpochs } from '../src/node/cluster/index.js';
import { SHARD_COUNT } from '../src/shards/index.js';
import { type Context, printJson, printTable } from './io.js';

export async function shards({ nc, cluster, options }: Context): Promise<number> {
  const epochs = await readEpochs(nc, cluster.live().length);
  const list = [];
  for (let shard = 0; shard < SHARD_COUNT; shard++) {
    const entry = cluster.map.get(shard)?.entry;
    if (options.node !== undefined && entry?.owner !== options.node) continue;
    list.push({
      shard,
      owner: entry?.owner ?? null,
      epoch: epochs.get(shard) ?? null,
      status: entry === undefined ? 'unassigned' : entry.status === 'moving' ? `moving to ${entry.to}` : epochs.has(shard) ? 'served' : 'claiming',
    });
  }
  if (options.json) printJson(list);
  else printTable([['SHARD', 'OWNER', 'EPOCH', 'STATUS'], ...list.map((s) => [s.shard, s.owner ?? '-', s.epoch ?? '-', s.status])]);
  return 0;
}
