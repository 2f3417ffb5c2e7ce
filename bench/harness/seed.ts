/**
 * Seeding a running node through its public HTTP API only, as a client would: a `bench`
 * tier with two limits too high to refuse anything in one run, and users on it, each with
 * an API key; then a check that a key gets a decision on that tier. Used by the Tally target
 * and by the pipeline suite; the suites that seed PostgreSQL directly use `test/support/seed.ts`.
 */
import { BENCH_RATE_LIMIT, BENCH_TIER, CONSUME_BODY, CONSUME_PATH } from './workload.js';

const SEED_CONCURRENCY = 8;
const REQUEST_TIMEOUT_MS = 30_000;

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
export async function checkKeyWorks(url: string, key: string): Promise<void> {
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
