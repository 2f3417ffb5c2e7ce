/**
 * Tally under test: a real node, the built `dist/src/node/main.js start`, as a child
 * process on a fresh embedded database in a temporary directory (or on BENCH_DATABASE_URL),
 * seeded through the public HTTP API only, as a client would: a `bench` tier with two
 * limits too high to refuse anything in one run, and 200 users on it, each with an API key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Child, startNode } from './children.js';
import { BENCH_RATE_LIMIT, BENCH_TIER, CONSUME_BODY, CONSUME_PATH, KEY_COUNT } from './workload.js';

/** The node's entry point, as `npm run build` lays it out next to `dist/bench/`. */
export const TALLY_MAIN = join(import.meta.dirname, '../src/node/main.js');

const READY_TIMEOUT_MS = 120_000;
const SEED_CONCURRENCY = 8;
const REQUEST_TIMEOUT_MS = 30_000;

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

class UnexpectedAnswerError extends Error {
  override readonly name = 'UnexpectedAnswerError';
}

async function call<T>(url: string, method: string, path: string, expected: number, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const init: RequestInit = { method, headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(url + path, init);
  const text = await response.text();
  if (response.status !== expected) {
    throw new UnexpectedAnswerError(`${method} ${path}: expected ${expected}, got ${response.status} ${text.slice(0, 300)}`);
  }
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

/** The tiers, then `users` users on the bench tier, each logged in once to create one API key. */
export async function seed(url: string, adminToken: string, users: number): Promise<string[]> {
  // Registration and login are limited per client address by the `anonymous` tier (60 a
  // minute); seeding sends 400 of them from one address. The data directory is thrown away
  // afterwards, so the tier is not put back.
  await call(url, 'PUT', '/v1/admin/tiers/anonymous', 200, { limits: [BENCH_RATE_LIMIT] }, adminToken);
  await call(url, 'PUT', '/v1/admin/tiers/bench', 200, BENCH_TIER, adminToken);

  const keys = new Array<string>(users);
  const seedUser = async (i: number) => {
    const email = `bench${i}@example.com`;
    const password = `bench-password-${i}`;
    const { id } = await call<{ id: string }>(url, 'POST', '/v1/users', 201, { email, password, name: `Bench ${i}` });
    await call(url, 'PATCH', `/v1/admin/users/${encodeURIComponent(id)}`, 200, { tier: 'bench' }, adminToken);
    const { token } = await call<{ token: string }>(url, 'POST', '/v1/sessions', 201, { email, password });
    const { key } = await call<{ key: string }>(url, 'POST', '/v1/keys', 201, { name: 'bench' }, token);
    keys[i] = key;
  };
  let next = 0;
  const worker = async () => {
    while (next < users) await seedUser(next++);
  };
  await Promise.all(Array.from({ length: Math.min(SEED_CONCURRENCY, users) }, worker));
  return keys;
}

/** A run that measured 401s or 429s would say nothing: check one key before measuring. */
async function checkKeyWorks(url: string, key: string): Promise<void> {
  const response = await fetch(url + CONSUME_PATH, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: CONSUME_BODY,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  if (response.status !== 200) throw new UnexpectedAnswerError(`seeded key refused: POST ${CONSUME_PATH} answered ${response.status} ${text.slice(0, 300)}`);
  const names = ((JSON.parse(text) as { limits?: { name: string }[] }).limits ?? []).map((limit) => limit.name).sort();
  if (
    names.join(',') !==
    BENCH_TIER.limits
      .map((limit) => limit.name)
      .sort()
      .join(',')
  ) {
    throw new UnexpectedAnswerError(`seeded user is not on the bench tier: consume answered limits [${names.join(', ')}]`);
  }
}
