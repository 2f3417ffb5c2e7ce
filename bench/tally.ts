/**
 * Tally under test: a real node (the built `dist/`) as a child process on a fresh embedded
 * database (or BENCH_DATABASE_URL), seeded through the public API with 200 users, each on
 * a tier with two limits high enough that the run measures admitted requests, and each
 * with an API key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startChild, type Child } from './children.js';

const MAIN = join(import.meta.dirname, '../src/node/main.js');

export interface TallyUnderTest {
  url: string;
  keys: string[];
  child: Child;
}

async function call(url: string, method: string, path: string, body: unknown, token?: string): Promise<any> {
  const response = await fetch(url + path, {
    method,
    headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text === '' ? null : JSON.parse(text);
}

export async function startTally(users: number): Promise<TallyUnderTest> {
  const admin = randomBytes(16).toString('hex');
  const env: Record<string, string> = {
    TALLY_HTTP_PORT: '0',
    TALLY_HTTP_HOST: '127.0.0.1',
    TALLY_DATA_DIR: mkdtempSync(join(tmpdir(), 'tally-bench-data-')),
    TALLY_ADMIN_TOKEN: admin,
    TALLY_LOG_LEVEL: 'info',
    DATABASE_URL: process.env.BENCH_DATABASE_URL ?? '',
  };
  // BENCH_PROFILE=<dir> writes a V8 CPU profile of the node (open it in Chrome DevTools).
  const profile = process.env.BENCH_PROFILE === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`];
  const { child, match } = await startChild([...profile, MAIN, 'start'], env, /"msg":"tally is serving".*"port":(\d+)|"port":(\d+).*"msg":"tally is serving"/);
  const url = `http://127.0.0.1:${match[1] ?? match[2]}`;
  await call(url, 'PUT', '/v1/admin/tiers/bench', {
    limits: [
      { name: 'requests', kind: 'rate', limit: 1_000_000_000, period_ms: 60_000, burst: 1_000_000 },
      { name: 'tokens', kind: 'budget', limit: 1_000_000_000_000, period: 'month' },
    ],
  }, admin);
  const keys: string[] = [];
  const seed = async (i: number) => {
    const email = `bench${i}@example.com`;
    const password = `bench-password-${i}`;
    await call(url, 'POST', '/v1/users', { email, password, name: `Bench ${i}`, tier: 'bench' }, admin);
    const { token } = await call(url, 'POST', '/v1/sessions', { email, password }, admin);
    const { key } = await call(url, 'POST', '/v1/keys', { name: 'bench' }, token);
    keys.push(key);
  };
  for (let i = 0; i < users; i += 8) await Promise.all(Array.from({ length: Math.min(8, users - i) }, (_, j) => seed(i + j)));
  return { url, keys, child };
}
