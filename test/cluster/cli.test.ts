/**
 * `tally cluster` against three node processes on a nats-server of their own, run with the
 * shipped configuration, as its operator user (no key secret, no right to write a bucket):
 * status and its
 * exit code, nodes, shards with epochs from the nodes, a drain that waits until the node is
 * empty (and a second drain that finds nothing to do), undrain giving the node its share
 * back, a move that stays until a rebalance undoes it, and the exit codes of bad usage and of a node that does not exist.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { sleep, waitFor } from '../support/wait.js';

const MAIN = join(import.meta.dirname, '../../dist/src/node/main.js');
const ids = ['k1', 'k2', 'k3'];
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await createTestCluster({ leaseMs: 3000, secured: true });
  await cluster.startAll(ids);
}, 60_000);
afterAll(() => cluster?.stop());

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function tally(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'cluster', ...args], {
      env: { PATH: process.env.PATH ?? '', NATS_URL: cluster.nats.url, NATS_USER: 'tally-operator', NATS_PASSWORD: cluster.natsPasswords!.operator, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - started }));
  });
}

describe('tally cluster', () => {
  it('shows status with the fields of the admin view, and exits 0 when every shard has a live owner', async () => {
    const ran = await tally(['status', '--json']);
    expect(ran.code).toBe(0);
    const status = JSON.parse(ran.stdout);
    const admin = await cluster.view(cluster.nodes.get('k1')!);
    expect(status.shards.by_node).toEqual(admin.shards.by_node);
    expect(status.nodes.map((node: { id: string }) => node.id)).toEqual(ids);
    expect(status.leader).toBe(admin.leader);
    const text = await tally(['status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('1024/1024 shards have a live owner');
    expect((await tally(['nodes'])).stdout).toMatch(/^NODE\s+ADDRESS\s+STATUS/);
  });

  it('lists shards with owners and the epochs the nodes serve them under', async () => {
    const ran = await tally(['shards', '--node', 'k2', '--json']);
    expect(ran.code).toBe(0);
    const list = JSON.parse(ran.stdout) as { shard: number; owner: string; epoch: number; status: string }[];
    const fence = await cluster.sql<{ shard: number; epoch: string }[]>`select shard, epoch from shard_fence where owner = 'k2' order by shard`;
    expect(list.map((row) => row.shard)).toEqual(fence.map((row) => row.shard));
    expect(list.map((row) => row.epoch)).toEqual(fence.map((row) => Number(row.epoch)));
    expect(list.every((row) => row.owner === 'k2' && row.status === 'served')).toBe(true);
  });

  it('drains a node until it holds nothing, keeps it empty, and undrains it', async () => {
    const drained = await tally(['drain', 'k3', '--json', '--timeout', '30']);
    expect(drained.code).toBe(0);
    const result = JSON.parse(drained.stdout.trim().split('\n').at(-1)!);
    expect(result).toMatchObject({ node: 'k3', drained: true, left: 0 });
    expect(result.shards_moved).toBeGreaterThan(300);
    const view = await cluster.view(cluster.nodes.get('k1')!);
    expect(view.shards.by_node.k3).toBeUndefined();
    expect(view.nodes.find((node) => node.id === 'k3')!.status).toBe('drained');
    // Twice is once; plain output on a pipe is a line per second.
    const again = await tally(['drain', 'k3']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('drained: true');
    // A rebalance now finds nothing to move; the drained node stays empty.
    const plan = await tally(['rebalance', '--dry-run', '--json']);
    expect(JSON.parse(plan.stdout)).toEqual({ moves: [] });
    expect((await tally(['undrain', 'k3'])).code).toBe(0);
    await waitFor(() => cluster.settledOn(ids), 20_000);
  }, 60_000);

  it('moves one shard where it is told and keeps it there, until a rebalance puts it back', async () => {
    const target = targetPlacement(ids);
    const shard = [...target.entries()].find(([, node]) => node === 'k1')![0];
    const moved = await tally(['move', String(shard), 'k2', '--json']);
    expect(moved.code).toBe(0);
    expect(JSON.parse(moved.stdout.trim().split('\n').at(-1)!)).toMatchObject({ shard, from: 'k1', to: 'k2', done: true });
    await sleep(1500); // several coordinator rounds: the shard is not moved back
    const listed = JSON.parse((await tally(['shards', '--node', 'k2', '--json'])).stdout) as { shard: number; status: string }[];
    expect(listed.find((row) => row.shard === shard)?.status).toBe('served');
    const plan = JSON.parse((await tally(['rebalance', '--dry-run', '--json'])).stdout);
    expect(plan.moves).toEqual([{ shard, from: 'k2', to: 'k1' }]);
    const rebalanced = await tally(['rebalance', '--json']);
    expect(rebalanced.code).toBe(0);
    expect(JSON.parse(rebalanced.stdout.trim().split('\n').at(-1)!)).toMatchObject({ done: true, left: 0 });
    await waitFor(() => cluster.settledOn(ids), 10_000);
    expect((await tally(['move', '5000', 'k2'])).code).toBe(2);
    expect((await tally(['move', '1', 'nobody'])).code).toBe(1);
  }, 60_000);

  it('exits 2 on bad usage and 1 when it cannot do what is asked, naming why', async () => {
    for (const args of [['frobnicate'], ['drain'], ['status', 'extra'], ['status', '--bogus'], []]) {
      const ran = await tally(args);
      expect(ran.code).toBe(2);
      expect(ran.stderr).toContain('usage: tally cluster');
    }
    const unknown = await tally(['drain', 'nobody']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no node "nobody"');
    const noNats = await tally(['status'], { NATS_URL: 'nats://127.0.0.1:1' });
    expect(noNats.code).toBe(1);
    expect(noNats.stderr).toContain('cannot reach NATS');
    // Credentials: refused by the server, or incomplete.
    const wrongPassword = await tally(['status'], { NATS_PASSWORD: 'not-the-password' });
    expect(wrongPassword.code).toBe(1);
    expect(wrongPassword.stderr).toMatch(/cannot reach NATS.*Authorization/i);
    expect(wrongPassword.stderr).not.toContain('not-the-password');
    const halfCredentials = await tally(['status'], { NATS_PASSWORD: '' });
    expect(halfCredentials.code).toBe(2);
    expect(halfCredentials.stderr).toContain('NATS_USER and NATS_PASSWORD go together');
  }, 30_000);
});
