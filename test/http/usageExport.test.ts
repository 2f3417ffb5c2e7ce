/**
 * The monthly export at scale: 300,000 users with usage on two resources over three days of
 * a month (1.8 million lines, about 70 MB of CSV) stream out of a node process whose peak
 * resident memory stops growing once the export is under way: the export pages through
 * users and writes as the client reads, holding no more than a page. (The first part of the
 * export raises the peak by what V8 lets its heap grow to between collections, whatever
 * the export's size: about 75 MB uncapped, then nothing more.)
 *
 * The node runs with its old generation capped at 64 MB. A buffered export (twice its 70 MB
 * as strings) could not finish at all; and the heap reaches its plateau early, where
 * uncapped it reached it before or after the first third, as the machine's load had it
 * (81 -> 112 or 158 MB at a third, and once 111 -> 156 MB after it: a CI failure).
 */
import { readFile } from 'node:fs/promises';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase } from '../support/postgres.js';
import { killAllNodes, type NodeProcess, spawnNode } from '../support/process.js';
import { makeTempDir } from '../support/tmp.js';

const USERS = 300_000;
const LINES = USERS * 2 * 3;
const ADMIN_TOKEN = 'admin-token-for-the-export-test';
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let node: NodeProcess;

beforeAll(async () => {
  database = await createTestDatabase();
  node = await spawnNode({
    DATABASE_URL: database.url,
    TALLY_DATA_DIR: await makeTempDir(),
    TALLY_ADMIN_TOKEN: ADMIN_TOKEN,
    NODE_OPTIONS: '--max-old-space-size=64',
  });
  const sql = postgres(database.url, { onnotice: () => {} });
  await sql`
    insert into users (id, email, tier, password_hash)
    select 'u' || lpad(n::text, 7, '0'), 'u' || n || '@example.com', 'free', 'x' from generate_series(1, ${USERS}) as n`;
  await sql`select usage_ensure_partitions('2026-10-01T00:00:00Z', 1)`;
  await sql`
    insert into usage (user_id, hour, resource, key_id, amount, requests, denied)
    select 'u' || lpad(n::text, 7, '0'), timestamptz '2026-10-05 10:00:00+00' + d * interval '1 day', r, '', n % 1000 + d, 1 + d, 0
    from generate_series(1, ${USERS}) as n, generate_series(0, 2) as d, unnest(array['default', 'tokens']) as r`;
  await sql`analyze`;
  await sql.end();
}, 180_000);
afterAll(async () => {
  await killAllNodes();
  await database?.drop();
});

/** The node's resident memory now and at its peak, in MB (Linux's /proc). */
async function memory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) / 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

it('streams 300,000 users’ month in flat memory', async () => {
  const before = await memory(node.child.pid!);
  const started = performance.now();
  const response = await fetch(`${node.baseUrl}/v1/admin/usage/export?month=2026-10`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(response.status).toBe(200);
  expect(response.headers.get('tally-export-users')).toBe(String(USERS));
  let bytes = 0;
  let lines = 0;
  let peak = before.peak;
  let peakAtAThird: number | undefined;
  let last = '';
  const decoder = new TextDecoder();
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.length;
    const text = decoder.decode(chunk, { stream: true });
    for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n', at + 1)) lines++;
    last = text.length > 0 ? text : last;
    if (peakAtAThird === undefined && lines >= LINES / 3) peakAtAThird = (await memory(node.child.pid!)).peak;
  }
  const seconds = (performance.now() - started) / 1000;
  const after = await memory(node.child.pid!);
  peak = Math.max(peak, after.peak);
  const megabytes = bytes / 1024 / 1024;
  console.log(
    `export: ${lines - 1} lines, ${megabytes.toFixed(0)} MB in ${seconds.toFixed(1)} s = ${Math.round((lines - 1) / seconds)} lines/s; ` +
      `node RSS ${before.rss.toFixed(0)} MB before, peak ${before.peak.toFixed(0)} → ${peakAtAThird?.toFixed(0)} MB at a third → ${peak.toFixed(0)} MB at the end`,
  );
  expect(lines).toBe(LINES + 1); // and the header line
  expect(last.endsWith('\n')).toBe(true);
  // Flat: the last two thirds of the answer (~45 MB, twice that as JavaScript strings) add
  // next to nothing to the peak; buffered, they would add all of it.
  expect(peak - peakAtAThird!).toBeLessThan(15);
  expect(peak - before.peak).toBeLessThan(megabytes * 2);
}, 180_000);
