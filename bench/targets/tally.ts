/**
 * Tally under test: a real node, the built `dist/src/node/main.js start`, as a child
 * process on a fresh embedded database in a temporary directory (or on BENCH_DATABASE_URL),
 * seeded through the public HTTP API only, as a client would (`harness/seed.ts`): a `bench`
 * tier with two limits too high to refuse anything in one run, and 200 users on it, each
 * with an API key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Child, startNode } from '../harness/children.js';
import { checkKeyWorks, seed } from '../harness/seed.js';
import { KEY_COUNT } from '../harness/workload.js';

/** The node's entry point, `dist/src/node/main.js` as `npm run build` lays it out, seen from `dist/bench/targets/`. */
export const TALLY_MAIN = join(import.meta.dirname, '../../src/node/main.js');

const READY_TIMEOUT_MS = 120_000;

export interface TallyUnderTest {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** One API key per seeded user. */
  keys: string[];
  /** The node's process id. */
  pid: number | undefined;
  /** SIGTERM, await the exit (the node flushes), then remove the temporary data directory. */
  stop(): Promise<void>;
}

export interface TallyOptions {
  users?: number;
  /** Postgres to run on instead of embedded PGlite. */
  databaseUrl?: string | undefined;
  /** Directory for a V8 CPU profile of the node (`--cpu-prof`). */
  profileDir?: string | undefined;
  /** The Redis replica to keep (REDIS_URL, TALLY_REDIS_PREFIX). */
  replica?: { url: string; prefix: string } | undefined;
}

export async function startTally(options: TallyOptions = {}): Promise<TallyUnderTest> {
  const users = options.users ?? KEY_COUNT;
  const port = await freePort();
  const adminToken = randomBytes(24).toString('hex');
  const dataDir = mkdtempSync(join(tmpdir(), 'tally-bench-data-'));
  const removeDataDir = () => rmSync(dataDir, { recursive: true, force: true });
  // Also on Ctrl-C, which ends the run from children.ts once every child has exited.
  process.once('exit', removeDataDir);
  const env: NodeJS.ProcessEnv = {
    ...inheritedEnv(),
    TALLY_HTTP_PORT: String(port),
    TALLY_HTTP_HOST: '127.0.0.1',
    TALLY_DATA_DIR: dataDir,
    TALLY_ADMIN_TOKEN: adminToken,
    TALLY_LOG_LEVEL: 'warn',
  };
  if (options.databaseUrl !== undefined) env.DATABASE_URL = options.databaseUrl;
  if (options.replica !== undefined) {
    env.REDIS_URL = options.replica.url;
    env.TALLY_REDIS_PREFIX = options.replica.prefix;
  }
  const profile = options.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`];
  // The node's stdout (its log) goes to our stderr: our stdout is the results table.
  const child = startNode('tally', [...profile, TALLY_MAIN, 'start'], env, ['ignore', 2, 2]);
  const stop = async () => {
    await child.stop();
    removeDataDir();
  };
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitUntilReady(url, child);
    const keys = await seed(url, adminToken, users);
    await checkKeyWorks(url, keys[0]!);
    return { url, keys, pid: child.process.pid, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * The parent's environment without what would change the node's role: a DATABASE_URL,
 * NATS_URL or REDIS_URL from the caller's shell would put it on their Postgres, into their
 * cluster, or on their Redis.
 */
function inheritedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('TALLY_') || name === 'DATABASE_URL' || name === 'NATS_URL' || name === 'REDIS_URL') continue;
    env[name] = value;
  }
  return env;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitUntilReady(url: string, child: Child): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (!child.alive) throw new Error(`tally exited (code ${child.process.exitCode}) before it was ready; its log is above`);
    try {
      const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(5_000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`tally was not ready within ${READY_TIMEOUT_MS / 1000} s (GET /health/ready)`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
