/**
 * Membership against a real nats-server with JetStream: members see each other, a silent
 * one drops out after a lease, a node restarted under its id waits for the previous
 * incarnation's lease, and a node whose entry was taken over learns it at its next renewal.
 */
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterMac, Membership, type MembershipOptions } from '../../src/node/cluster/index.js';
import { type NatsServer, startNatsServer, stopAllNatsServers } from '../support/natsServer.js';
import { sleep, waitFor } from '../support/wait.js';

const LEASE_MS = 600;
const HEARTBEAT_MS = 100;
const log = pino({ level: 'silent' });
const mac = new ClusterMac(new Uint8Array(32).fill(7), log);

let server: NatsServer;
const connections: NatsConnection[] = [];
const members: Membership[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  for (const member of members) member.close();
  await Promise.all(connections.map((nc) => nc.close()));
  await stopAllNatsServers();
});

async function member(nodeId: string, overrides: Partial<MembershipOptions> = {}): Promise<Membership> {
  const nc = await connect({ servers: server.url });
  connections.push(nc);
  const membership = await Membership.open(nc, {
    nodeId,
    incarnation: randomBytes(4).toString('hex'),
    address: `http://127.0.0.1/${nodeId}`,
    version: 'test',
    leaseMs: LEASE_MS,
    heartbeatMs: HEARTBEAT_MS,
    log,
    mac,
    ...overrides,
  });
  members.push(membership);
  return membership;
}

const liveIds = (membership: Membership) => membership.live().map((m) => m.record.id);

describe('membership', () => {
  it('lets members see each other, and drops one that stops renewing after a lease', async () => {
    const a = await member('m-a');
    const b = await member('m-b');
    await a.join();
    await b.join();
    await waitFor(async () => liveIds(a).includes('m-b') && liveIds(b).includes('m-a'), 2000);
    expect(a.leaseValid && b.leaseValid).toBe(true);

    b.close(); // a crash: the entry stays, nothing renews it
    await sleep(LEASE_MS / 2);
    expect(liveIds(a)).toContain('m-b'); // not yet a lease
    await waitFor(async () => !liveIds(a).includes('m-b'), LEASE_MS * 2);
    expect(a.all().map((m) => m.record.id)).toContain('m-b'); // still in the bucket, just silent
    expect(b.leaseValid).toBe(false);
  });

  it('makes a node restarted under its id wait until the previous incarnation is silent for a lease', async () => {
    const first = await member('m-same');
    await first.join();
    const second = await member('m-same');
    let joined = false;
    const joining = second.join().then(() => {
      joined = true;
    });
    await sleep(LEASE_MS * 2);
    expect(joined).toBe(false); // the first still renews

    const stoppedAt = performance.now();
    first.close();
    await joining;
    const waited = performance.now() - stoppedAt;
    // A lease from its last renewal, which came up to one heartbeat before it stopped.
    expect(waited).toBeGreaterThanOrEqual(LEASE_MS - HEARTBEAT_MS - 20);
    expect(waited).toBeLessThan(LEASE_MS + 1500);
    expect(second.leaseValid).toBe(true);
  });

  it('tells a frozen node that its entry was taken over at its next renewal, and stops its lease', async () => {
    const frozen = await member('m-frozen');
    await frozen.join();
    let lost: string | null = null;
    frozen.onLeaseLost = (reason) => {
      lost = reason;
    };
    // Frozen: no renewals (as under SIGSTOP). Its lease runs down after half a lease.
    (frozen as unknown as { stopTimer(): void }).stopTimer();
    await sleep(LEASE_MS / 2 + 50);
    expect(frozen.leaseValid).toBe(false);

    const successor = await member('m-frozen', { incarnation: 'successor' });
    await successor.join();
    // Resumed: its next renewal is refused, for good.
    await (frozen as unknown as { renew(): Promise<void> }).renew();
    expect(lost).toMatch(/no longer holds its member entry/);
    expect(frozen.leaseValid).toBe(false);
    expect(successor.leaseValid).toBe(true);
    await waitFor(async () => successor.live().find((m) => m.record.id === 'm-frozen')?.record.incarnation === 'successor', 1000);
  });

  it('removes the entry on a planned leave, and others see it go at once', async () => {
    const a = await member('m-stay');
    const b = await member('m-leave');
    await a.join();
    await b.join();
    await waitFor(async () => liveIds(a).includes('m-leave'), 2000);
    await b.leave();
    await waitFor(async () => !a.all().some((m) => m.record.id === 'm-leave'), 1000);
  });
});
