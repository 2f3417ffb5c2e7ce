#!/usr/bin/env node
/**
 * The `tally` command: `tally start` runs a node until SIGTERM or SIGINT; `tally migrate`
 * applies pending migrations and exits.
 */
import { parseArgs } from 'node:util';
import { migrate, openDatabase } from '../persistence/index.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { TallyNode } from './node.js';

const USAGE = `usage: tally <command>

commands:
  start      run a node (configured by environment variables; see README)
  migrate    apply pending database migrations and exit
`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } });
  const command = positionals[0];
  if (values.help === true || command === undefined) {
    process.stdout.write(USAGE);
    return command === undefined && values.help !== true ? 2 : 0;
  }
  const config = loadConfig();
  const log = createLogger(config.logLevel, config.nodeId);
  switch (command) {
    case 'start': {
      const node = new TallyNode(config, log);
      const stop = (signal: string) => {
        log.info({ signal }, 'shutting down');
        node.stop().then(
          () => process.exit(0),
          (error: unknown) => {
            log.error({ err: error }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      await node.start();
      return -1; // keep running
    }
    case 'migrate': {
      const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
      try {
        const { applied } = await migrate(database.sql);
        log.info({ applied }, applied.length === 0 ? 'nothing to migrate' : 'migrations applied');
      } finally {
        await database.close();
      }
      return 0;
    }
    default:
      process.stderr.write(`unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

// A rejection nobody awaited is a bug to log, not a reason to drop every user's counters.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}\n`);
});

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof ConfigError) process.stderr.write(`configuration error: ${error.message}\n`);
    else process.stderr.write(`tally failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
