/** `tally cluster nodes`: every member entry, live or not (a member past its lease shows as `silent`). */
import { type Context, printJson, printTable } from './io.js';

export async function nodes({ cluster, options }: Context): Promise<number> {
  const { byNode } = cluster.map.summary(new Set(cluster.live().map((member) => member.record.id)));
  const rows = cluster.members.map(({ record, status, leaseAgeMs, live }) => ({
    id: record.id,
    address: record.address,
    status: live ? status : 'silent',
    shards: byNode[record.id] ?? 0,
    lease_age_ms: leaseAgeMs,
    version: record.version,
  }));
  if (options.json) printJson(rows, 2);
  else
    printTable([
      ['NODE', 'ADDRESS', 'STATUS', 'SHARDS', 'LEASE AGE', 'VERSION'],
      ...rows.map((row) => [row.id, row.address, row.status, row.shards, `${row.lease_age_ms} ms`, row.version]),
    ]);
  return 0;
}
