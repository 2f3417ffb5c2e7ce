/**
 * The usage history over HTTP on one node (Postgres): what is recorded for consumes,
 * reservations and refusals, who may read it, and the month's export parsed back by a real
 * CSV parser.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createUser, startTestNode, type TestNode, type TestUser } from '../support/tally.js';
import { waitFor } from '../support/wait.js';

type UsagePage = { data: { start: string; results: any[] }[]; next_page: string | null };
type UsageAnswer = { status: number; text: string; body: UsagePage };

let t: TestNode & { dropDatabase(): Promise<void> };

beforeAll(async () => {
  t = await startTestNode();
  const tier = await t.api('PUT', '/v1/admin/tiers/metered', {
    token: t.adminToken,
    body: {
      limits: [
        { name: 'requests', kind: 'window', limit: 5, window_ms: 60_000 },
        { name: 'tokens', kind: 'budget', limit: 10_000, period: 'month', resource: 'tokens' },
      ],
    },
  });
  expect(tier.status).toBe(200);
});
afterAll(async () => {
  await t.stop();
  await t.dropDatabase();
});

const monthStart = () => {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
};
const month = () => monthStart().slice(0, 7);

interface Result {
  resource: string;
  key_id?: string;
  user_id?: string;
  tier?: string;
  amount: number;
  requests: number;
  denied: number;
}

/** Every result of a usage query, all pages, summed over buckets by resource and key. */
async function usageOf(path: string, token: string): Promise<Map<string, Result>> {
  const totals = new Map<string, Result>();
  let page: string | null = null;
  do {
    const res: UsageAnswer = await t.api<UsagePage>('GET', `${path}${page === null ? '' : `&page=${encodeURIComponent(page)}`}`, { token });
    expect(res.status, res.text).toBe(200);
    for (const bucket of res.body.data) {
      for (const result of bucket.results as Result[]) {
        const id = `${result.user_id ?? ''}/${result.resource}/${result.key_id ?? ''}`;
        const total = totals.get(id) ?? { ...result, amount: 0, requests: 0, denied: 0 };
        total.amount += result.amount;
        total.requests += result.requests;
        total.denied += result.denied;
        totals.set(id, total);
      }
    }
    page = res.body.next_page;
  } while (page !== null);
  return totals;
}

async function meteredUser(): Promise<TestUser> {
  return createUser(t.api, { tier: 'metered', adminToken: t.adminToken });
}

describe('recording', () => {
  it('counts consumes by resource and key, settles at what was used, refusals as denied, a retry once', async () => {
    const user = await meteredUser();
    const key = await createKey(t.api, user);
    const consume = (token: string, body: unknown, headers?: Record<string, string>) =>
      t.api('POST', '/v1/quota/consume', { token, body, ...(headers === undefined ? {} : { headers }) });
    expect((await consume(key.key, { cost: 1, amounts: { tokens: 1500 } })).status).toBe(200);
    expect((await consume(key.key, { cost: 1, amounts: { tokens: 500 } }, { 'idempotency-key': 'once' })).status).toBe(200);
    expect((await consume(key.key, { cost: 1, amounts: { tokens: 500 } }, { 'idempotency-key': 'once' })).status).toBe(200);
    expect((await consume(user.token, { cost: 1 })).status).toBe(200);
    const hold = await t.api('POST', '/v1/quota/reservations', { token: key.key, body: { cost: 1, amounts: { tokens: 4000 } } });
    expect(hold.status).toBe(201);
    expect((await t.api('POST', `/v1/quota/reservations/${hold.body.id}/settle`, { token: key.key, body: { amounts: { tokens: 1200 } } })).status).toBe(200);
    const released = await t.api('POST', '/v1/quota/reservations', { token: key.key, body: { cost: 1, amounts: { tokens: 10 } } });
    expect((await t.api('DELETE', `/v1/quota/reservations/${released.body.id}`, { token: key.key })).status).toBe(204);
    // The window admits 5 a minute: 4 are charged (the replay and the released hold were not)…
    expect((await consume(key.key, { cost: 1 })).status).toBe(200);
    // …this is the fifth, and the next is refused.
    const refused = await consume(key.key, { cost: 1 });
    expect(refused.status).toBe(429);
    // More tokens than the budget can ever hold: refused by the tokens budget.
    expect((await consume(user.token, { cost: 1, amounts: { tokens: 20_000 } })).status).toBe(422);

    const path = `/v1/quota/usage?start=${monthStart()}&bucket=1d&group_by=resource,key`;
    const expected = new Map<string, Result>([
      [`/default/${key.id}`, { resource: 'default', key_id: key.id, amount: 4, requests: 4, denied: 1 }],
      [`/tokens/${key.id}`, { resource: 'tokens', key_id: key.id, amount: 3200, requests: 3, denied: 0 }],
      [`/default/${user.sessionId}`, { resource: 'default', key_id: user.sessionId, amount: 1, requests: 1, denied: 0 }],
      [`/tokens/${user.sessionId}`, { resource: 'tokens', key_id: user.sessionId, amount: 0, requests: 0, denied: 1 }],
    ]);
    // Usage is read as of the last write-behind flush (100 ms here).
    await waitFor(async () => JSON.stringify([...(await usageOf(path, user.token))].sort()) === JSON.stringify([...expected].sort()));

    // The budget's state says what was spent on tokens; the history says the same.
    const quota = await t.api('GET', '/v1/quota', { token: user.token });
    const tokens = quota.body.limits.find((limit: { name: string }) => limit.name === 'tokens');
    expect(10_000 - tokens.remaining).toBe(3200);

    // Without group_by=key, by resource only.
    const byResource = await usageOf(`/v1/quota/usage?start=${monthStart()}&bucket=1h`, key.key);
    expect(byResource.get('/tokens/')).toEqual({ resource: 'tokens', amount: 3200, requests: 3, denied: 1 });
  });
});

describe('reading', () => {
  it('pages through results with next_page, each once', async () => {
    const user = await meteredUser();
    for (const resource of ['a', 'b', 'c', 'd']) {
      expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { resource } })).status).toBe(200);
    }
    await waitFor(async () => (await usageOf(`/v1/quota/usage?start=${monthStart()}&limit=1000`, user.token)).size === 4);
    const seen: string[] = [];
    let page: string | null = null;
    do {
      const res: UsageAnswer = await t.api<UsagePage>('GET', `/v1/quota/usage?start=${monthStart()}&limit=1${page === null ? '' : `&page=${page}`}`, {
        token: user.token,
      });
      expect(res.status).toBe(200);
      expect(res.body.data).toHaveLength(1);
      seen.push(...res.body.data[0]!.results.map((result: Result) => result.resource));
      page = res.body.next_page;
    } while (page !== null);
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
  });

  it('refuses bad parameters with a problem that names them', async () => {
    const user = await meteredUser();
    const cases: [string, RegExp][] = [
      ['', /start/],
      ['start=yesterday', /RFC 3339/],
      [`start=${monthStart()}&end=2000-01-01T00:00:00Z`, /after/],
      [`start=${monthStart()}&bucket=1w`, /bucket/],
      [`start=${monthStart()}&group_by=user`, /group_by/],
      [`start=${monthStart()}&user_id=someone`, /unknown parameter "user_id"/],
      [`start=${monthStart()}&limit=0`, /limit/],
      [`start=${monthStart()}&page=bm90LW91cnM`, /page/],
      [`start=${monthStart()}&start=${monthStart()}`, /twice/],
      ['start=2026-02-31T00:00:00Z', /RFC 3339/],
      ['start=0000-01-01T00:00:00Z', /RFC 3339/],
      ['start=2026-01-01T24:00:00Z', /RFC 3339/],
      ['start=2025-01-01T00:00:00Z&end=2026-06-01T00:00:00Z', /400 days/],
      ['start=2026-01-01T00:00:00Z&end=2026-03-01T00:00:00Z&bucket=1h', /31 days/],
      [`start=${monthStart()}&page=${Buffer.from(JSON.stringify([9e15, 'a', '', '', ''])).toString('base64url')}`, /page/],
    ];
    for (const [query, detail] of cases) {
      const res = await t.api('GET', `/v1/quota/usage?${query}`, { token: user.token });
      expect(res.status, query).toBe(400);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(res.body.detail, query).toMatch(detail);
    }
  });
});

describe('authorization', () => {
  it('shows a user only its own usage, and refuses a key without the quota:read scope', async () => {
    const alice = await meteredUser();
    const bob = await meteredUser();
    expect((await t.api('POST', '/v1/quota/consume', { token: alice.token, body: { resource: 'alice-only' } })).status).toBe(200);
    await waitFor(async () => (await usageOf(`/v1/quota/usage?start=${monthStart()}`, alice.token)).size === 1);
    expect((await usageOf(`/v1/quota/usage?start=${monthStart()}`, bob.token)).size).toBe(0);

    const consumeOnly = await createKey(t.api, bob, { scopes: ['quota:consume'] });
    const refused = await t.api('GET', `/v1/quota/usage?start=${monthStart()}`, { token: consumeOnly.key });
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toMatch(/quota:read/);
    const reader = await createKey(t.api, bob, { scopes: ['quota:read'] });
    expect((await t.api('GET', `/v1/quota/usage?start=${monthStart()}`, { token: reader.key })).status).toBe(200);
    expect((await t.api('GET', `/v1/quota/usage?start=${monthStart()}`, {})).status).toBe(401);
  });

  it('refuses the admin routes to session tokens and API keys', async () => {
    const user = await meteredUser();
    const key = await createKey(t.api, user);
    for (const path of [`/v1/admin/usage?start=${monthStart()}`, `/v1/admin/usage/export?month=${month()}`, `/v1/admin/usage/top?month=${month()}`]) {
      expect((await t.api('GET', path, { token: user.token })).status, path).toBe(401);
      expect((await t.api('GET', path, { token: key.key })).status, path).toBe(401);
    }
  });
});

describe('admin', () => {
  it('reads across users by user and tier, filtered by user or tier', async () => {
    const user = await meteredUser();
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 3, resource: 'admin-view' } })).status).toBe(200);
    const path = `/v1/admin/usage?start=${monthStart()}&group_by=user,tier&user_id=${user.id}`;
    await waitFor(async () => (await usageOf(path, t.adminToken)).size === 1);
    expect([...(await usageOf(path, t.adminToken)).values()]).toEqual([
      { resource: 'admin-view', user_id: user.id, tier: 'metered', amount: 3, requests: 1, denied: 0 },
    ]);
    const byTier = await usageOf(`/v1/admin/usage?start=${monthStart()}&group_by=tier&tier=metered`, t.adminToken);
    expect(byTier.get('/admin-view/')).toMatchObject({ tier: 'metered', amount: 3 });
    const otherTier = await usageOf(`/v1/admin/usage?start=${monthStart()}&tier=enterprise`, t.adminToken);
    expect(otherTier.get('/admin-view/')).toBeUndefined();
  });

  it('exports the month as CSV a parser reads back, and as NDJSON, line for line the same', async () => {
    const user = await meteredUser();
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 2, resource: '=formula,"quoted"' } })).status).toBe(200);
    const path = `/v1/admin/usage?start=${monthStart()}&group_by=user&user_id=${user.id}`;
    await waitFor(async () => (await usageOf(path, t.adminToken)).size === 1);

    const csv = await fetch(`${t.baseUrl}/v1/admin/usage/export?month=${month()}`, { headers: { authorization: `Bearer ${t.adminToken}` } });
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(Number(csv.headers.get('tally-export-users'))).toBeGreaterThan(0);
    const rows = parse(await csv.text(), { columns: true }) as Record<string, string>[];
    const mine = rows.filter((row) => row.user_id === user.id);
    const today = new Date().toISOString().slice(0, 10);
    // A leading "=" is neutralised for spreadsheets; the quote and comma survive the round trip.
    expect(mine).toEqual([{ user_id: user.id, tier: 'metered', resource: `'=formula,"quoted"`, day: today, amount: '2', requests: '1', denied: '0' }]);

    const ndjson = await fetch(`${t.baseUrl}/v1/admin/usage/export?month=${month()}&format=ndjson`, { headers: { authorization: `Bearer ${t.adminToken}` } });
    const lines = (await ndjson.text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(rows.length);
    expect(lines.find((line) => line.user_id === user.id)).toEqual({
      user_id: user.id,
      tier: 'metered',
      resource: '=formula,"quoted"',
      day: today,
      amount: 2,
      requests: 1,
      denied: 0,
    });
    const bad = await t.api('GET', '/v1/admin/usage/export?month=2026-13', { token: t.adminToken });
    expect(bad.status).toBe(400);
  });

  it('`tally usage export` writes what the export route streams, and says why when it cannot', async () => {
    const user = await meteredUser();
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token, body: { cost: 5, resource: 'cli' } })).status).toBe(200);
    await waitFor(async () => (await usageOf(`/v1/admin/usage?start=${monthStart()}&user_id=${user.id}`, t.adminToken)).size === 1);
    const main = join(import.meta.dirname, '../../dist/src/node/main.js');
    const cli = (args: string[], token?: string) =>
      promisify(execFile)(process.execPath, [main, 'usage', ...args], {
        env: { PATH: process.env.PATH ?? '', ...(token === undefined ? {} : { TALLY_ADMIN_TOKEN: token }) },
        timeout: 20_000,
      }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
      );
    const exported = await cli(['export', '--month', month(), '--url', t.baseUrl], t.adminToken);
    expect(exported.code, exported.stderr).toBe(0);
    const direct = await fetch(`${t.baseUrl}/v1/admin/usage/export?month=${month()}`, { headers: { authorization: `Bearer ${t.adminToken}` } });
    expect(exported.stdout).toBe(await direct.text());
    const rows = parse(exported.stdout, { columns: true }) as Record<string, string>[];
    expect(rows.find((row) => row.user_id === user.id)).toMatchObject({ resource: 'cli', amount: '5', requests: '1' });

    expect((await cli(['export', '--month', month(), '--url', t.baseUrl])).code).toBe(2); // no token
    expect((await cli(['export', '--month', '2026-13', '--url', t.baseUrl], t.adminToken)).code).toBe(2);
    const refused = await cli(['export', '--month', month(), '--url', t.baseUrl], 'not-the-admin-token');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/answered 401/);
  });

  it('lists the top users of each resource this month', async () => {
    const small = await meteredUser();
    const big = await meteredUser();
    await t.api('POST', '/v1/quota/consume', { token: small.token, body: { cost: 1, resource: 'ranked' } });
    await t.api('POST', '/v1/quota/consume', { token: big.token, body: { cost: 4, resource: 'ranked' } });
    await waitFor(async () => {
      const res = await t.api('GET', `/v1/admin/usage/top?month=${month()}&limit=2`, { token: t.adminToken });
      const ranked = res.body.users.filter((user: { resource: string }) => user.resource === 'ranked');
      return ranked.length === 2 && ranked[0].user_id === big.id && ranked[0].amount === 4 && ranked[1].user_id === small.id;
    });
  });
});
