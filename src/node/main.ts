#!/usr/bin/env node
/**
 * The `tally` command. `tally start` runs a node until SIGTERM or SIGINT; `tally migrate`
 * applies pending migrations and exits. Configuration is by environment variables only, so
 * that a node, its container and its process manager read the same settings.
 *
 * Exit codes: 0 done, 1 failed (the message names the command and why), 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import postgres from 'postgres';
import { ListenError } from '../http/index.js';
import { DataDirInUseError, MigrationError, migrate, openDatabase } from '../persistence/index.js';
import { type Config, ConfigError, ENVIRONMENT, loadConfig, redactUrl } from './config.js';
import { createLogger } from './logger.js';
import { TallyNode } from './node.js';
import { UsageError } from './usageError.js';
import { VERSION } from './version.js';

interface Command {
  summary: string;
  usage: string;
  details: string;
  run(config: Config): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  start: {
    summary: 'run a node until SIGTERM or SIGINT (migrates first)',
    usage: 'tally start',
    details: 'Serves HTTP on TALLY_HTTP_PORT; SIGTERM or SIGINT stops accepting, finishes what is\nin flight, writes every actor behind and exits 0.',
    run: startNode,
  },
  migrate: {
    summary: 'apply pending database migrations and exit',
    usage: 'tally migrate',
    details:
      'Applies the migrations not yet applied to DATABASE_URL (or the embedded database in\nTALLY_DATA_DIR), each once, under an advisory lock; safe to run while nodes serve.',
    run: migrateDatabase,
  },
  cluster: {
    summary: 'see and change a running cluster: status, nodes, shards, drain, undrain, rebalance',
    usage: 'tally cluster <command> [--json] [--nats URL]   (tally cluster --help)',
    details: 'Talks to the cluster over NATS only (NATS_URL or --nats); see `tally cluster --help`.',
    // Handed its own arguments before the others are parsed (see main).
    run: async () => 2,
  },
  usage: {
    summary: 'export a month of usage history for billing: tally usage export --month YYYY-MM',
    usage: 'tally usage export --month YYYY-MM [--format csv|ndjson] [--url URL] > usage.csv   (tally usage --help)',
    details: 'Streams GET /v1/admin/usage/export from a node (TALLY_URL or --url) with TALLY_ADMIN_TOKEN; see `tally usage --help`.',
    // Handed its own arguments before the others are parsed (see main).
    run: async () => 2,
  },
  help: {
    summary: 'show this help, or a command’s: tally help <command>',
    usage: 'tally help [command]',
    details: '',
    run: async () => 0,
  },
  version: {
    summary: 'print the version',
    usage: 'tally version',
    details: 'Also `tally --version`.',
    run: async () => 0,
  },
};

function overview(): string {
  const width = Math.max(...ENVIRONMENT.map((variable) => variable.name.length));
  return [
    `tally ${VERSION}: user profiles, sessions, API keys and real-time quotas`,
    '',
    'usage: tally <command> [--help]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(9)} ${command.summary}`),
    '',
    'options:',
    '  -h, --help     show help (also after a command)',
    '  -v, --version  print the version',
    '',
    'environment (read at start; a bad value stops start-up with a message naming it):',
    ...ENVIRONMENT.map((variable) => `  ${variable.name.padEnd(width)}  ${variable.meaning} [default: ${variable.default}]`),
    '',
  ].join('\n');
}

function commandHelp(command: Command): string {
  return [
    `usage: ${command.usage}`,
    '',
    command.summary,
    ...(command.details === '' ? [] : ['', command.details]),
    '',
    `The environment variables are listed by \`tally --help\`.`,
    '',
  ].join('\n');
}

/** For an option the CLI does not take, the variable an operator probably meant. */
function hintFor(option: string): string {
  const word = option.replace(/^-+/, '').split('=')[0]!.toUpperCase().replaceAll('-', '_');
  const match = word.length >= 3 ? ENVIRONMENT.find((variable) => variable.name.endsWith(`_${word}`) || variable.name === word) : undefined;
  return match === undefined ? 'tally is configured by environment variables (tally --help lists them)' : `set the environment variable ${match.name} instead`;
}

const OPTIONS = { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } } as const;

function parse(argv: string[]) {
  try {
    const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: OPTIONS });
    const [command, ...rest] = positionals;
    return { command, rest, help: values.help === true, version: values.version === true };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if ((error as { code?: string }).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(message);
    const option = /'([^']+)'/.exec(message)?.[1] ?? '';
    throw new UsageError(`unknown option ${option}: ${hintFor(option)}`);
  }
}

async function main(argv: string[]): Promise<number> {
  const command = argv.find((arg) => !arg.startsWith('-'));
  if (command === 'cluster' && argv[0] === 'cluster') {
    // Operator tooling: its own options, and nothing of a node's configuration.
    const { runClusterCli } = await import('../../cluster/index.js');
    return runClusterCli(argv.slice(1));
  }
  if (command === 'usage' && argv[0] === 'usage') {
    const { runUsageCli } = await import('../../cluster/index.js');
    return runUsageCli(argv.slice(1));
  }
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (error) {
    return usage(command, error);
  }
  if (args.command === undefined) {
    if (args.version) process.stdout.write(`tally ${VERSION}\n`);
    else (args.help ? process.stdout : process.stderr).write(overview());
    return args.version || args.help ? 0 : 2;
  }
  const chosen = Object.hasOwn(COMMANDS, args.command) ? COMMANDS[args.command] : undefined;
  if (chosen === undefined) return usage(undefined, new UsageError(`unknown command "${args.command}"`));
  const allowed = args.command === 'help' ? 1 : 0; // `help` takes the command to describe
  if (args.rest.length > allowed) return usage(args.command, new UsageError(`unexpected argument "${args.rest[allowed]}"`));
  if (args.command === 'version' || args.version) {
    process.stdout.write(`tally ${VERSION}\n`);
    return 0;
  }
  if (args.command === 'help') {
    const topic = args.rest[0];
    if (topic === undefined) process.stdout.write(overview());
    else if (Object.hasOwn(COMMANDS, topic)) process.stdout.write(commandHelp(COMMANDS[topic]!));
    else return usage(undefined, new UsageError(`unknown command "${topic}"`));
    return 0;
  }
  if (args.help) {
    process.stdout.write(commandHelp(chosen));
    return 0;
  }
  return chosen.run(loadConfig());
}

function usage(command: string | undefined, error: unknown): number {
  const known = command !== undefined && Object.hasOwn(COMMANDS, command) ? command : undefined;
  const prefix = known === undefined ? 'tally' : `tally ${known}`;
  process.stderr.write(`${prefix}: ${error instanceof Error ? error.message : String(error)}\n\n`);
  process.stderr.write(known === undefined ? overview() : commandHelp(COMMANDS[known]!));
  return 2;
}

/**
 * V8 finishes the marking of a major collection in tasks of the event loop's thread by
 * default. With hundreds of thousands of actors (about 400 MB live) on a machine whose cores
 * are busy, its helper threads fall behind and those tasks ran back to back for 300–450 ms
 * while requests waited: the event loop's worst delay and the scale bench's p99. Without
 * them marking advances in steps as the program allocates, between requests (four runs
 * each: worst delay 79–148 ms against 181–387 ms, warm p99 20–81 ms against 78–164 ms).
 * Set before the node starts, while the heap is small.
 */
const SERVER_V8_FLAGS = '--no-incremental-marking-task';

async function startNode(config: Config): Promise<number> {
  setFlagsFromString(SERVER_V8_FLAGS);
  const log = createLogger({ level: config.logLevel, format: config.logFormat, nodeId: config.nodeId });
  const node = new TallyNode(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return; // a second signal while shutting down changes nothing
    stopping = true;
    log.info({ signal }, 'shutting down');
    node.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  log.info({ version: VERSION, pid: process.pid }, 'starting');
  try {
    await node.start();
  } catch (error) {
    if (stopping) return -1; // a signal ended the start: the shutdown exits
    throw error;
  }
  return -1; // keep running
}

async function migrateDatabase(config: Config): Promise<number> {
  const log = createLogger({ level: config.logLevel, format: config.logFormat, nodeId: config.nodeId });
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
  try {
    const { applied } = await migrate(database.sql);
    log.info({ applied }, applied.length === 0 ? 'nothing to migrate' : 'migrations applied');
  } finally {
    await database.close();
  }
  return 0;
}

/**
 * Why a command failed, in one line an operator can act on. Errors Tally expects (a setting,
 * the port, the data directory, an unreachable database) get no stack trace; anything else
 * is a bug, and its stack is what a report needs.
 */
function failure(error: unknown): string {
  if (error instanceof ConfigError) return `configuration error: ${error.message}`;
  if (error instanceof ListenError) {
    const port = error.code === 'EADDRINUSE' || error.code === 'EACCES';
    return port ? `${error.message}; choose another with TALLY_HTTP_PORT (now ${error.port})` : `${error.message}; check TALLY_HTTP_HOST (now ${error.host})`;
  }
  if (error instanceof DataDirInUseError) return `${error.message}; stop that process or set TALLY_DATA_DIR to another directory`;
  if (error instanceof MigrationError) return error.message;
  const url = process.env.DATABASE_URL?.trim() || undefined;
  const database = url === undefined ? 'the embedded database (TALLY_DATA_DIR)' : `the database at ${redactUrl(url)} (DATABASE_URL)`;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONNECTION_ERRORS.has(code)) return `cannot reach ${database}: ${code}`;
  if (error instanceof postgres.PostgresError) return `${database} refused: ${error.message} (SQLSTATE ${error.code})`;
  if (error instanceof Error) return error.stack ?? error.message;
  return String(error);
}

/** Codes of the driver and the system for a database that cannot be reached at all. */
const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'CONNECT_TIMEOUT',
  'CONNECTION_ENDED',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
]);

// A rejection nobody awaited is a bug to log, not a reason to drop every user's counters.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}\n`);
});

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    const command = argv.find((arg) => !arg.startsWith('-')) ?? 'start';
    process.stderr.write(`tally ${command}: ${failure(error)}\n`);
    process.exit(1);
  },
);
