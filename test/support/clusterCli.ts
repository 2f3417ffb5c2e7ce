/**
 * `tally cluster`, run as an operator runs it (the built CLI, in a process of its own), for
 * tests that ask for moves while something else goes on. Runs still going when a test file
 * ends are stopped by `stopClusterClis` in its `afterAll`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { killGroup } from './children.js';

const MAIN = join(import.meta.dirname, '../../dist/src/node/main.js');
const running = new Set<ChildProcess>();

/**
 * Runs `tally cluster <args>` against `natsUrl` (with `env` on top: NATS_USER and
 * NATS_PASSWORD on the shipped configuration): its exit code and its output (stdout and stderr).
 */
export function runClusterCli(natsUrl: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'cluster', ...args], {
      env: { PATH: process.env.PATH ?? '', NATS_URL: natsUrl, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('exit', (code) => {
      running.delete(child);
      resolve({ code: code ?? -1, out });
    });
  });
}

export async function stopClusterClis(): Promise<void> {
  await Promise.all([...running].map(killGroup));
}
