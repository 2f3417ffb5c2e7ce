/**
 * `tally cluster <command>`: see and change a running cluster over NATS alone (`NATS_URL`
 * or `--nats`). It reads what the nodes keep in JetStream KV (members, the shard map, the
 * coordinator's entry) through the cluster's readers and writes only operator requests
 * (`tally_operator`), which the coordinator carries out by planned moves. So every command
 * is safe to run twice and to interrupt: Ctrl-C stops the waiting, never a move half way.
 *
 * This file parses the arguments and dispatches; each command has a file of its own.
 *
 * Exit codes: 0 done, 1 not done (timeout, refused, unreachable; the message says which),
 * 2 bad usage.
 */
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { ClusterNotFoundError, ClusterReader } from '../src/node/cluster/index.js';
import { CONFIG_DEFAULTS, loadNatsAuth, UsageError } from '../src/node/index.js';
import { SHARD_COUNT } from '../src/shards/index.js';
import { drain } from './drain.js';
import { NotDoneError } from './errors.js';
import { type Context, connectNats, type Options } from './io.js';
import { move } from './move.js';
import { nodes } from './nodes.js';
import { rebalance } from './rebalance.js';
import { shards } from './shards.js';
import { status } from './status.js';
import { undrain } from './undrain.js';

export { runUsageCli } from './usageExport.js';

const DEFAULT_TIMEOUT_S = 300;

const USAGE = `usage: tally cluster <command> [options]

commands:
  status                 nodes, shard counts, moves, the coordinator; exit 1 if a shard has no live owner
  nodes                  the members: id, address, status, shards, lease age, version
  shards [--node N]      every shard: owner, epoch, status
  drain <node>           move every shard off the node and keep it empty; waits (--no-wait: at once)
  undrain <node>         let the node take shards again
  move <shard> <node>    one planned move; the shard stays there until a rebalance; waits
  rebalance [--dry-run]  the moves that bring the map to its placement (undoing moves made by
                         move); without --dry-run, asks for them and waits

options:
  --nats URL             NATS servers, comma-separated (default: NATS_URL)
  --json                 print JSON (for scripts)
  --no-wait              drain: return once the request is stored
  --timeout SECONDS      how long drain and rebalance wait (default ${DEFAULT_TIMEOUT_S})
  -h, --help             this help
`;

interface Command {
  /** How many positional arguments it takes, checked before it runs. */
  arity: 0 | 1 | 2;
  run(context: Context, args: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  status: { arity: 0, run: status },
  nodes: { arity: 0, run: nodes },
  shards: { arity: 0, run: shards },
  drain: { arity: 1, run: (context, [node]) => drain(context, node!) },
  undrain: { arity: 1, run: (context, [node]) => undrain(context, node!) },
  move: { arity: 2, run: (context, [shard, node]) => move(context, Number(shard), node!) },
  rebalance: { arity: 0, run: rebalance },
};

const TAKES = ['takes no argument', 'takes one node id', 'takes a shard and a node id'] as const;

interface Invocation {
  command: { name: string; run: Command['run']; args: string[] };
  options: Options;
}

/** The command line, checked (what is wrong with it throws), or null for `--help`. */
function parse(argv: string[]): Invocation | null {
  const parsed = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean' },
      nats: { type: 'string' },
      node: { type: 'string' },
      'no-wait': { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (parsed.values.help === true) return null;
  const [name, ...args] = parsed.positionals;
  const timeoutS = parsed.values.timeout === undefined ? DEFAULT_TIMEOUT_S : Number(parsed.values.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageError(`--timeout takes seconds, got "${parsed.values.timeout}"`);
  if (name === undefined) throw new UsageError('name a command');
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name]! : undefined;
  if (command === undefined) throw new UsageError(`unknown command "${name}"`);
  if (args.length !== command.arity) throw new UsageError(`${name} ${TAKES[command.arity]}`);
  if (name === 'move') checkShard(args[0]!);
  const nats = parsed.values.nats ?? (process.env.NATS_URL?.trim() || undefined);
  if (nats === undefined) throw new UsageError('say where NATS is: NATS_URL or --nats');
  return {
    command: { name, run: command.run, args },
    options: {
      json: parsed.values.json === true,
      nats,
      natsAuth: loadNatsAuth(),
      node: parsed.values.node,
      wait: parsed.values['no-wait'] !== true,
      dryRun: parsed.values['dry-run'] === true,
      timeoutS,
    },
  };
}

function checkShard(shard: string): void {
  if (!/^\d+$/.test(shard)) throw new UsageError(`move: "${shard}" is not a shard number (0–${SHARD_COUNT - 1})`);
  if (Number(shard) >= SHARD_COUNT) throw new UsageError(`move: shard ${shard} is out of range (0–${SHARD_COUNT - 1})`);
}

export async function runClusterCli(argv: string[]): Promise<number> {
  let invocation: Invocation | null;
  try {
    invocation = parse(argv);
  } catch (error) {
    process.stderr.write(`tally cluster: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (invocation === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  const { command, options } = invocation;
  let nc: NatsConnection;
  try {
    nc = await connectNats(options.nats, options.natsAuth);
  } catch (error) {
    process.stderr.write(`tally cluster ${command.name}: cannot reach NATS at ${options.nats}: ${(error as Error).message}\n`);
    return 1;
  }
  // Ctrl-C: stop waiting; whatever was requested stays requested, and the cluster goes on.
  const interrupted = new AbortController();
  const onSignal = () => interrupted.abort();
  process.once('SIGINT', onSignal);
  let cluster: ClusterReader | undefined;
  try {
    cluster = await ClusterReader.open(nc, { defaultLeaseMs: CONFIG_DEFAULTS.TALLY_LEASE_MS });
    return await command.run({ nc, cluster, options, signal: interrupted.signal }, command.args);
  } catch (error) {
    process.stderr.write(`tally cluster ${command.name}: ${explain(error)}\n`);
    return error instanceof UsageError ? 2 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    cluster?.close();
    // The command's outcome is decided; a connection that fails to close changes nothing of it.
    await nc.close().catch(() => undefined);
  }
}

/** The errors a command expects say what happened in their message; anything else is a bug, and its stack is the report. */
function explain(error: unknown): string {
  if (error instanceof NotDoneError || error instanceof UsageError || error instanceof ClusterNotFoundError) return error.message;
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
