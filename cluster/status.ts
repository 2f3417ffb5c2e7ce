/**
 * `tally cluster status`: the live nodes, their shard counts and the coordinator. Exits 1
 * when a shard has no live owner (or no node is live), so that a script can wait on it.
 */
import { SHARD_COUNT } from '../src/shards/index.js';
import { type Context, printJson, printTable } from './io.js';

export async function status({ cluster, options }: Context): Promise<number> {
  const live = cluster.live();
  const { byNode, moves, unassigned } = cluster.map.summary(new Set(live.map((member) => member.record.id)));
  const ok = unassigned === 0 && live.length > 0;
  if (options.json) {
    printJson(
      {
        ok,
        leader: cluster.leader,
        nodes: live.map(({ record, status, leaseAgeMs }) => ({
          id: record.id,
          address: record.address,
          status,
          shards: byNode[record.id] ?? 0,
          lease_age_ms: leaseAgeMs,
          version: record.version,
        })),
        shards: { count: SHARD_COUNT, by_node: byNode, moving: moves.map((move) => move.shard), moves, unassigned },
      },
      2,
    );
  } else {
    printTable([
      ['NODE', 'ADDRESS', 'STATUS', 'SHARDS', 'LEASE AGE', 'VERSION'],
      ...live.map(({ record, status, leaseAgeMs }) => [
        record.id + (record.id === cluster.leader ? ' *' : ''),
        record.address,
        status,
        byNode[record.id] ?? 0,
        `${leaseAgeMs} ms`,
        record.version,
      ]),
    ]);
    process.stdout.write(
      `\n${SHARD_COUNT - unassigned}/${SHARD_COUNT} shards have a live owner; ${moves.length} moving; coordinator: ${cluster.leader ?? 'none'} (*)\n`,
    );
    if (!ok) process.stdout.write(`NOT OK: ${unassigned} shards have no live owner\n`);
  }
  return ok ? 0 : 1;
}
