/**
 * The console page in a real browser (playwright-core driving Debian's chromium): three node
 * processes; the page signs in with the admin token, shows the 1024-shard map over three
 * owners and the nodes with their request rates, follows a drain made with the CLI (the drained node's cells go to
 * the others), looks a user up, and a screenshot is saved to test-output/.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { apiClient } from '../support/http.js';
import { createUser } from '../support/tally.js';
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
});
