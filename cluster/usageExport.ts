/**
 * `tally usage export --month YYYY-MM [--format csv|ndjson] [--url URL]`: a month of usage
 * for billing, written to standard output as the node streams it (GET
 * /v1/admin/usage/export with the admin token), so a month of any size passes through in
 * flat memory. On a terminal, standard error shows a bar: users exported of the users there
 * are (users without usage that month have no line, so it may jump at the end).
 *
 * Exit codes: 0 written whole, 1 not (unreachable, refused, cut off: the message says which),
 * 2 bad usage.
 */
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { UsageError } from '../src/node/index.js';

const DEFAULT_URL = 'http://127.0.0.1:8080';

const USAGE_EXPORT_HELP = `usage: tally usage export --month YYYY-MM [options] > usage.csv

Writes one line per user, resource and day of the month (UTC) to standard output:
user_id,tier,resource,day,amount,requests,denied

options:
  --month YYYY-MM        the month (required)
  --format csv|ndjson    default csv (with a header line)
  --url URL              a node or the load balancer in front (default: TALLY_URL, else ${DEFAULT_URL})
  -h, --help             this help

environment:
  TALLY_ADMIN_TOKEN      the admin token the nodes are configured with (required)
  TALLY_URL              as --url
`;

interface ExportOptions {
  month: string;
  format: 'csv' | 'ndjson';
  url: string;
  token: string;
}

function parse(argv: string[]): ExportOptions | null {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { month: { type: 'string' }, format: { type: 'string' }, url: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) return null;
  if (positionals.length !== 1 || positionals[0] !== 'export') throw new UsageError('the command is `tally usage export`');
  if (values.month === undefined || !/^\d{4}-(0[1-9]|1[0-2])$/.test(values.month)) throw new UsageError('--month takes a month as YYYY-MM');
  const format = values.format ?? 'csv';
  if (format !== 'csv' && format !== 'ndjson') throw new UsageError('--format is csv or ndjson');
  const url = values.url ?? (process.env.TALLY_URL?.trim() || DEFAULT_URL);
  if (!URL.canParse(url)) throw new UsageError(`--url: "${url}" is not a URL`);
  const token = process.env.TALLY_ADMIN_TOKEN?.trim();
  if (token === undefined || token === '') throw new UsageError('set TALLY_ADMIN_TOKEN to the nodes’ admin token');
  return { month: values.month, format, url, token };
}

export async function runUsageCli(argv: string[]): Promise<number> {
  let options: ExportOptions | null;
  try {
    options = parse(argv);
  } catch (error) {
    process.stderr.write(`tally usage: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE_EXPORT_HELP}`);
    return 2;
  }
  if (options === null) {
    process.stdout.write(USAGE_EXPORT_HELP);
    return 0;
  }
  try {
    return await exportMonth(options);
  } catch (error) {
    process.stderr.write(`tally usage export: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

async function exportMonth({ month, format, url, token }: ExportOptions): Promise<number> {
  const target = new URL(`/v1/admin/usage/export?month=${month}&format=${format}`, url);
  const response = await fetch(target, { headers: { authorization: `Bearer ${token}` } }).catch((error: unknown) => {
    throw new Error(
      `cannot reach ${target.origin}: ${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}`,
    );
  });
  if (response.status !== 200 || response.body === null) {
    const text = await response.text();
    let detail = text.slice(0, 300);
    try {
      detail = (JSON.parse(text) as { detail?: string }).detail ?? detail;
    } catch {
      // Not a problem document (a load balancer's page): its start is the best explanation.
    }
    process.stderr.write(`tally usage export: ${target.origin} answered ${response.status}: ${detail}\n`);
    return 1;
  }
  const users = Number(response.headers.get('tally-export-users') ?? 0);
  const bar =
    process.stderr.isTTY === true ? new SingleBar({ format: `usage ${month} [{bar}] {value}/{total} users | {lines} lines`, stream: process.stderr }) : null;
  bar?.start(Math.max(1, users), 0, { lines: 0 });
  let lines = 0;
  let seen = 0;
  let lastUser = '';
  let partial = '';
  const progress = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (bar !== null) {
        const text = partial + chunk.toString('utf8');
        const complete = text.split('\n');
        partial = complete.pop() ?? '';
        for (const line of complete) {
          lines++;
          // The first field is the user id in both formats (ids never need CSV quoting).
          const user = format === 'csv' ? line.slice(0, line.indexOf(',')) : line.slice(12, line.indexOf('"', 12));
          if (user !== lastUser && user !== 'user_id') {
            lastUser = user;
            seen++;
          }
        }
        bar.update(Math.min(seen, Math.max(1, users)), { lines });
      }
      done(null, chunk);
    },
  });
  try {
    // A cut connection makes the body stream fail: the pipeline rejects, and the exit code says so.
    await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), progress, process.stdout, { end: false });
  } catch (error) {
    bar?.stop();
    throw new Error(`the export was cut off before its end: ${(error as Error).message}`);
  }
  bar?.update(Math.max(1, users), { lines });
  bar?.stop();
  return 0;
}
