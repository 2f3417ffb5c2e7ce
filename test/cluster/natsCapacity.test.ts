/**
 * The NATS API bounds the decisions it works on at once (TALLY_NATS_MAX_IN_FLIGHT, a batch
 * counting each item): a request past the bound is answered at once with the service error
 * 503 (`at-capacity`, `retry_after_ms`) and charges nothing, as HTTP answers a full node.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, strictLimits, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createUser } from '../support/tally.js';

const MAX_IN_FLIGHT = 5;
let cluster: TestCluster;
let nc: NatsConnection;

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000, env: { TALLY_NATS_MAX_IN_FLIGHT: String(MAX_IN_FLIGHT) } });
  await cluster.addTier('strict', strictLimits(100));
  await cluster.startAll(['c1']);
  nc = await connect({ servers: cluster.nats.url });
}, 60_000);
afterAll(async () => {
  await nc?.close();
  await cluster?.stop();
});

const call = async (body: unknown) => {
  const reply = await nc.request('tally.v1.quota.consume', JSON.stringify(body), { timeout: 5000 });
  return { code: reply.headers?.get('Nats-Service-Error-Code') ?? '', body: JSON.parse(reply.string()) };
};

describe('the NATS API at capacity', () => {
  it('refuses a request past its bound with 503 and charges nothing; takes what fits', async () => {
    const user = await createUser(apiClient(cluster.nodes.get('c1')!.baseUrl), { adminToken: cluster.adminToken, tier: 'strict' });
    const item = { user_id: user.id };
    const over = await call({ items: Array.from({ length: MAX_IN_FLIGHT + 1 }, () => item) });
    expect(over.code).toBe('503');
    expect(over.body).toMatchObject({ status: 503, type: 'urn:tally:problem:at-capacity' });
    expect(over.body.retry_after_ms).toBeGreaterThan(0);
    const fits = await call({ items: Array.from({ length: MAX_IN_FLIGHT }, () => item) });
    expect(fits.code).toBe('');
    expect(fits.body.results.every((result: { allowed: boolean }) => result.allowed)).toBe(true);
    const single = await call(item);
    expect(single.body.allowed).toBe(true);
    // The refused batch charged nothing: 5 + 1 of the 100 requests are spent.
    const requests = single.body.limits.find((limit: { name: string }) => limit.name === 'requests');
    expect(requests.remaining).toBe(100 - MAX_IN_FLIGHT - 1);
  });
});
