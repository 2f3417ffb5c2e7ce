/**
 * The console page in a real browser (playwright-core driving Debian's chromium): three node
 * processes; the page signs in with the admin token, shows the 1024-shard map over three
 * owners and the nodes with their request rates, follows a drain made with the CLI (the drained node's cells go to
 * the others), looks a user up, and a screenshot is saved to test-output/. Then the charts: a
 * user's usage over 30 days by resource, the month's top users and each node's requests per
 * second, with a screenshot in a temporary directory.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createUser } from '../support/tally.js';
import { makeTempDir } from '../support/tmp.js';
import { waitFor } from '../support/wait.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const MAIN = join(import.meta.dirname, '../../dist/src/node/main.js');
const OUTPUT = join(import.meta.dirname, '../../test-output');
const ids = ['v1', 'v2', 'v3'];
let cluster: TestCluster;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH`);
  cluster = await createTestCluster({ leaseMs: 3000 });
  await Promise.all(ids.map((id) => cluster.start(id)));
  await waitFor(() => cluster.settledOn(ids), 20_000);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await cluster?.stop();
});

function drain(node: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'cluster', 'drain', node, '--timeout', '30'], {
      env: { PATH: process.env.PATH ?? '', NATS_URL: cluster.nats.url },
      stdio: 'ignore',
    });
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

describe('the console', () => {
  it('signs in, shows 1024 shards over three owners, follows a drain, and looks a user up', async () => {
    const page = await browser.newPage();
    const node = cluster.nodes.get('v1')!;
    await page.goto(`${node.baseUrl}/console`);
    await page.fill('#token', 'not-the-token-at-all');
    await page.click('button[type=submit]');
    await page.waitForSelector('#login:not([hidden])');
    expect(await page.textContent('#login-error')).toContain('not the admin token');

    await page.fill('#token', cluster.adminToken);
    await page.click('#login-form button');
    await page.waitForFunction("document.querySelectorAll('#grid .cell').length === 1024");
    // Expressions as text: they run in the page, and this project's types know no DOM.
    const owners = () => page.evaluate<string[]>("[...document.querySelectorAll('#grid .cell')].map((cell) => cell.dataset.owner)");
    await waitFor(async () => new Set(await owners()).size === 3, 5000);
    expect(new Set(await owners())).toEqual(new Set(ids));
    expect(await page.evaluate("[...document.querySelectorAll('#nodes tbody tr')].map((row) => row.dataset.node)")).toEqual(ids);
    // The token is in the page's memory only.
    expect(await page.evaluate('[localStorage.length, sessionStorage.length, document.cookie]')).toEqual([0, 0, '']);

    // Each node's request rate, from the counts its heartbeats carry.
    const hammer = setInterval(() => void fetch(`${node.baseUrl}/health/live`), 5);
    try {
      await page.waitForFunction("/[1-9]\\d*\\/s/.test(document.querySelector('#nodes tbody tr[data-node=v1]')?.textContent ?? '')", undefined, {
        timeout: 10_000,
      });
    } finally {
      clearInterval(hammer);
    }

    expect(await drain('v3')).toBe(0);
    await waitFor(async () => !(await owners()).includes('v3'), 5000);
    expect(new Set(await owners())).toEqual(new Set(['v1', 'v2']));
    expect(await page.textContent('#nodes')).toContain('drained');

    const user = await createUser(apiClient(node.baseUrl), { adminToken: cluster.adminToken, tier: 'pro' });
    await page.fill('#user-id', user.id);
    await page.click('#user-form button');
    await page.waitForFunction("(document.querySelector('#user-result')?.textContent ?? '').includes('shard')");
    expect(await page.textContent('#user-result')).toMatch(/on shard \d+, owner v[12]/);

    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, 'console-after-drain.png'), fullPage: true });
    await page.close();
  }, 60_000);

  it('draws a user’s usage by day and resource, the top users of the month and each node’s decisions per second', async () => {
    const node = cluster.nodes.get('v1')!;
    const api = apiClient(node.baseUrl);
    const user = await createUser(api, { adminToken: cluster.adminToken, tier: 'pro' });
    const consumes = [
      { cost: 1, amounts: { tokens: 1500 } },
      { cost: 1, amounts: { tokens: 800 } },
      { cost: 1, amounts: { tokens: 2400 } },
      { resource: 'images', cost: 3 },
    ];
    for (const body of consumes) expect((await api('POST', '/v1/quota/consume', { token: user.token, body })).status).toBe(200);
    // Usage is written behind: it is in the history after the owner's next flush.
    const start = new Date(Date.now() - 86_400_000).toISOString();
    await waitFor(async () => {
      const usage = await api('GET', `/v1/admin/usage?start=${start}&bucket=1d&user_id=${user.id}`, { token: cluster.adminToken });
      return usage.status === 200 && usage.body.data.flatMap((bucket: { results: unknown[] }) => bucket.results).length === 3;
    }, 10_000);

    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.goto(`${node.baseUrl}/console`);
    await page.fill('#token', cluster.adminToken);
    await page.click('#login-form button');
    await page.waitForFunction("document.querySelectorAll('#grid .cell').length === 1024");
    await page.fill('#user-id', user.id);
    await page.click('#user-form button');

    // One bar series per resource, named in the legend (the first entry is the x axis).
    await page.waitForSelector('#usage-chart .uplot canvas');
    const labels = (chart: string) =>
      page.evaluate<string[]>(`[...document.querySelectorAll('${chart} .u-legend .u-series .u-label')].map((l) => l.textContent)`);
    expect(await labels('#usage-chart')).toEqual(['day (UTC)', 'default', 'images', 'tokens']);
    expect(await page.isHidden('#usage-empty')).toBe(true);
    // The legend shows the 30 days' totals while the pointer is elsewhere.
    expect(await page.textContent('#usage-chart .u-legend')).toContain('4,700 in 30 days');

    // The top users of the month list the user, for each resource it used.
    await page.waitForSelector(`#top-users tbody tr[data-user="${user.id}"]`);
    const rows = await page.evaluate<string[][]>(
      `[...document.querySelectorAll('#top-users tbody tr[data-user="${user.id}"]')].map((row) => [...row.cells].map((cell) => cell.textContent))`,
    );
    expect(rows).toContainEqual([user.id, 'pro', 'tokens', '4,700', '3', '0']);
    expect(rows).toContainEqual([user.id, 'pro', 'images', '3', '1', '0']);

    // Each node's decisions per second: a line per node, kept by the node since it started.
    await page.waitForSelector('#rates-chart .uplot canvas');
    // A node is drawn once the node serving the page has sampled its heartbeats (every 10 s;
    // the page reads the rates every 10 s too).
    await page.waitForFunction(
      `['v1', 'v2', 'v3'].every((id) => [...document.querySelectorAll('#rates-chart .u-legend .u-series .u-label')].some((l) => l.textContent === id))`,
      undefined,
      { timeout: 40_000 },
    );
    expect(await labels('#rates-chart')).toEqual(['time', 'v1', 'v2', 'v3']);
    // The nodes sample every 10 s: a line needs two points (the page reads them every 10 s too).
    await page.waitForFunction("Number(document.querySelector('#rates-chart')?.dataset.points) >= 2", undefined, { timeout: 40_000 });
    expect(await page.textContent('#rates-note')).toBe('a point every 10 s');

    // A user without usage: the empty state instead of a chart.
    const idle = await createUser(api, { adminToken: cluster.adminToken });
    await page.fill('#user-id', idle.id);
    await page.click('#user-form button');
    await page.waitForSelector('#usage-empty:not([hidden])');
    expect(await page.textContent('#usage-empty')).toBe('no usage in the last 30 days');
    expect(await page.$('#usage-chart canvas')).toBeNull();

    await page.fill('#user-id', user.id);
    await page.click('#user-form button');
    await page.waitForSelector('#usage-chart .uplot canvas');
    const screenshot = join(await makeTempDir('tally-console-'), 'console-usage.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    const png = readFileSync(screenshot);
    expect(png.length).toBeGreaterThan(10_000);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    await page.close();
  }, 90_000);
});
