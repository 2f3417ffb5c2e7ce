/**
 * GET /v1/admin/cluster/rates on a single node: the node answers for itself, a point every
 * 10 s of the quota decisions it made per second (the console's line chart).
 */
import { describe, expect, it } from 'vitest';
import { createUser, useTestNode } from '../support/tally.js';
import { sleep } from '../support/wait.js';

const node = useTestNode({ backend: 'pglite' });

interface Rates {
  interval_ms: number;
  nodes: { id: string; points: { at: string; per_second: number }[] }[];
}

describe('GET /v1/admin/cluster/rates', () => {
  it('is for the admin only', async () => {
    const t = node();
    expect((await t.api('GET', '/v1/admin/cluster/rates')).status).toBe(401);
  });

  it('answers with this node, and a point of its decision rate after one interval', async () => {
    const t = node();
    const first = await t.api<Rates>('GET', '/v1/admin/cluster/rates', { token: t.adminToken });
    expect(first.status).toBe(200);
    expect(first.body.interval_ms).toBe(10_000);
    expect(first.body.nodes.map((n) => n.id)).toEqual([t.node.config.nodeId]);

    // Decisions while the interval runs; the first sample was taken as the node started.
    const user = await createUser(t.api);
    const started = Date.now();
    let points: Rates['nodes'][number]['points'] = [];
    while (points.length === 0) {
      if (Date.now() - started > 15_000) throw new Error('no point within 15 s');
      await Promise.all(Array.from({ length: 20 }, () => t.api('POST', '/v1/quota/consume', { token: user.token })));
      await sleep(250);
      points = (await t.api<Rates>('GET', '/v1/admin/cluster/rates', { token: t.adminToken })).body.nodes[0]!.points;
    }
    expect(points).toHaveLength(1);
    expect(points[0]!.per_second).toBeGreaterThan(0);
    const at = Date.parse(points[0]!.at);
    expect(Math.abs(Date.now() - at)).toBeLessThan(15_000);
  }, 20_000);
});
