/**
 * What every `tally cluster` command shares: the options it was called with, its way to the
 * cluster (one NATS connection and one reader), and how it answers: a table or JSON on
 * standard output, the progress of a wait on standard error.
 */
import { connect, type NatsConnection, NoRespondersError } from '@nats-io/transport-node';
import { SingleBar } from 'cli-progress';
import {
  type ClusterReader,
  type NatsAuth,
  natsConnectOptions,
  OPERATOR_INBOX_PREFIX,
  OPERATOR_REQUESTS_SUBJECT,
  type OperatorRequest,
  type ShardMapView,
} from '../src/node/cluster/index.js';
import { NotDoneError } from './errors.js';

export interface Options {
  json: boolean;
  nats: string;
  /** The operator's NATS credentials (NATS_USER…, as for nodes). */
  natsAuth: NatsAuth;
  /** `shards --node`: only the shards of this node. */
  node: string | undefined;
  wait: boolean;
  dryRun: boolean;
  timeoutS: number;
}

/** What a command runs with. */
export interface Context {
  nc: NatsConnection;
  cluster: ClusterReader;
  options: Options;
  /** Aborted by Ctrl-C: stop waiting; whatever was requested stays requested. */
  signal: AbortSignal;
}

/**
 * The CLI's connection: the operator's credentials (NATS_USER… as for nodes), and replies on
 * inboxes of its own prefix, the only ones the shipped configuration lets the operator user
 * subscribe to.
 */
export function connectNats(servers: string, auth: NatsAuth): Promise<NatsConnection> {
  return connect({
    ...natsConnectOptions(auth),
    servers: servers.split(',').map((url) => url.trim()),
    name: 'tally-cluster-cli',
    timeout: 5000,
    inboxPrefix: OPERATOR_INBOX_PREFIX,
  });
}

/** How long a node has to carry out a request. */
const ASK_TIMEOUT_MS = 10_000;

/**
 * Asks a node to write an operator request (the entries are sealed with the key secret,
 * which the CLI does not hold). Throws NotDoneError when no node answers or a node refuses.
 */
export async function askNode(nc: NatsConnection, request: OperatorRequest): Promise<{ removed?: number }> {
  let answer: { ok?: true; removed?: number; error?: string };
  try {
    answer = (await nc.request(OPERATOR_REQUESTS_SUBJECT, JSON.stringify(request), { timeout: ASK_TIMEOUT_MS })).json();
  } catch (error) {
    const why = error instanceof NoRespondersError || (error as Error)?.cause instanceof NoRespondersError ? 'no node is running' : (error as Error).message;
    throw new NotDoneError(`no node carried out the request (${why})`, { cause: error });
  }
  if (answer.ok !== true) throw new NotDoneError(`a node refused the request: ${answer.error ?? 'no reason given'}`);
  return answer;
}

export function printJson(value: unknown, indent?: number): void {
  process.stdout.write(`${JSON.stringify(value, null, indent)}\n`);
}

/** The outcome of a request: one JSON line, or `key: value` pairs. */
export function report(options: Options, body: Record<string, unknown>): void {
  if (options.json) printJson(body);
  else
    process.stdout.write(
      `${Object.entries(body)
        .map(([key, value]) => `${key}: ${value}`)
        .join(', ')}\n`,
    );
}

/** Rows in columns as wide as their widest cell; the first row is the header. */
export function printTable(rows: (string | number)[][]): void {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => String(row[column]).length)));
  process.stdout.write(
    `${rows
      .map((row) =>
        row
          .map((cell, column) => String(cell).padEnd(widths[column]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n')}\n`,
  );
}

/**
 * Polls the shard map until `remaining` reaches 0, the timeout passes or Ctrl-C, and returns
 * what remains; shows a bar on a terminal (moved / total, rate, ETA) and a line a second
 * otherwise (not with --json).
 */
export async function waitForMoves(context: Context, total: number, remaining: (map: ShardMapView) => number, what: string): Promise<number> {
  const { options, signal } = context;
  const until = performance.now() + options.timeoutS * 1000;
  const tty = process.stderr.isTTY === true && !options.json;
  const bar = tty ? new SingleBar({ format: `${what} [{bar}] {value}/{total} shards | {speed} shards/s | ETA {eta}s`, stream: process.stderr }) : null;
  bar?.start(total, 0, { speed: '0' });
  const started = performance.now();
  let lastLine = 0;
  let left = total;
  try {
    while (!signal.aborted && performance.now() < until) {
      left = remaining(context.cluster.map);
      const moved = total - left;
      const speed = (moved / Math.max(0.001, (performance.now() - started) / 1000)).toFixed(0);
      bar?.update(moved, { speed });
      if (!tty && !options.json && (performance.now() - lastLine >= 1000 || left === 0)) {
        lastLine = performance.now();
        process.stderr.write(`${what}: ${moved}/${total} shards moved (${speed}/s)\n`);
      }
      if (left === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    bar?.stop();
  }
  return left;
}
