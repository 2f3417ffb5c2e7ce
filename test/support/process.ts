/**
 * Runs a Tally node as a child process (the compiled `dist/` build that `npm test` makes
 * first), for tests that must stop it the way an operator or a crash would: SIGTERM, or
 * SIGKILL with no chance to flush.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { killGroup } from './children.js';

const MAIN = join(import.meta.dirname, '../../dist/src/node/main.js');

export interface NodeProcess {
  child: ChildProcess;
  baseUrl: string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  logs: string[];
}

const spawned = new Set<ChildProcess>();

/** SIGKILLs the process group of every node still running (for afterAll, pass or fail). */
export async function killAllNodes(): Promise<void> {
  await Promise.all([...spawned].map(killGroup));
}

export async function spawnNode(env: Record<string, string>): Promise<NodeProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" (npm test does) first`);
  const child = spawn(process.execPath, [MAIN, 'start'], {
    env: { PATH: process.env.PATH ?? '', TALLY_LOG_LEVEL: 'info', TALLY_HTTP_PORT: '0', TALLY_HTTP_HOST: '127.0.0.1', TALLY_SHUTDOWN_GRACE_MS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: killAllNodes() in afterAll stops whatever a test left running.
    detached: true,
  });
  spawned.add(child);
  child.once('exit', () => spawned.delete(child));
  const logs: string[] = [];
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not left running: a node that never said it serves is killed with its group.
      void killGroup(child);
      reject(new Error(`node did not start:\n${logs.join('\n')}`));
    }, 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === 'tally is serving' && entry.port !== undefined) {
          clearTimeout(timer);
          resolve(entry.port);
        }
      } catch {
        // not a log line
      }
    });
    createInterface({ input: child.stderr! }).on('line', (line) => logs.push(line));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`node exited (${code}) before serving:\n${logs.join('\n')}`));
    });
  });
  return { child, baseUrl: `http://127.0.0.1:${port}`, exited, logs };
}
