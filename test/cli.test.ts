/**
 * What an operator meets first, on the built command: help, version and usage errors, a port
 * or a data directory already taken, the start line and the access log, and `npm start`
 * stopped by SIGTERM the way a container runtime or a process manager stops it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { ENVIRONMENT } from '../src/node/config.js';
import { apiClient } from './support/http.js';
import { createTestDatabase } from './support/postgres.js';
import { freePort } from './support/privatePostgres.js';
import { killAllNodes, type NodeProcess, spawnNode } from './support/process.js';
import { makeTempDir } from './support/tmp.js';
import { waitFor } from './support/wait.js';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'dist/src/node/main.js');
const run = promisify(execFile);

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Every `tally` run is aborted (SIGKILL) in afterAll, whatever became of its test. */
const runs: AbortController[] = [];

async function tally(args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  const abort = new AbortController();
  runs.push(abort);
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? '', TALLY_LOG_LEVEL: 'warn', ...env },
      timeout: 25_000,
      killSignal: 'SIGKILL',
      signal: abort.signal,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

const children: (NodeProcess | ChildProcess)[] = [];
const groups: number[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  await killAllNodes();
  for (const abort of runs) abort.abort();
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const child of children) ('child' in child ? child.child : child).kill('SIGKILL');
  for (const cleanup of cleanups) await cleanup();
});

interface Started {
  child: ChildProcess;
  /** Everything it wrote so far, stdout and stderr together. */
  output(): string;
  /** Its exit code, or the signal that ended it. */
  exited: Promise<number | string>;
}

/** Starts `program` in a process group of its own, which afterAll kills whatever became of the test. */
function startGroup(program: string, args: string[], env: Record<string, string>, cwd?: string): Started {
  const child = spawn(program, args, { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  groups.push(child.pid!);
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, output: () => output, exited };
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('tally --help, help, --version', () => {
  it('lists every command and every environment variable with its default', async () => {
    for (const args of [['--help'], ['help'], ['-h']]) {
      const { code, stdout } = await tally(args);
      expect(code, args.join(' ')).toBe(0);
      for (const command of ['start', 'migrate', 'help', 'version']) expect(stdout).toMatch(new RegExp(`^  ${command} +\\S`, 'm'));
      for (const variable of ENVIRONMENT) expect(stdout).toContain(`${variable.name}`);
      for (const variable of ENVIRONMENT) expect(stdout).toContain(`[default: ${variable.default}]`);
    }
  });

  it('describes each command with --help or help <command>', async () => {
    for (const args of [
      ['start', '--help'],
      ['help', 'start'],
      ['migrate', '-h'],
    ]) {
      const { code, stdout } = await tally(args);
      expect(code, args.join(' ')).toBe(0);
      expect(stdout).toMatch(new RegExp(`^usage: tally ${args.includes('migrate') ? 'migrate' : 'start'}\\n`));
    }
  });

  it('prints the package version', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const args of [['--version'], ['-v'], ['version']]) expect(await tally(args)).toMatchObject({ code: 0, stdout: `tally ${version}\n` });
  });
});

describe('bad usage', () => {
  it('prints usage and exits 2 for an unknown option, naming the variable meant, without a stack trace', async () => {
    const { code, stderr } = await tally(['start', '--port', '9000']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^tally start: unknown option --port: set the environment variable TALLY_HTTP_PORT instead/);
    expect(stderr).toContain('usage: tally start');
    expect(stderr).not.toMatch(/ERR_PARSE_ARGS|\n\s+at /);
  });

  it('prints usage and exits 2 for an option given a value it does not take, or an extra argument', async () => {
    expect(await tally(['--version=1'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^tally: Option '-v, --version' does not take an argument/) });
    for (const args of [
      ['version', 'extra'],
      ['help', 'start', 'extra'],
      ['start', 'extra'],
    ]) {
      const { code, stderr } = await tally(args);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr, args.join(' ')).toMatch(new RegExp(`^tally ${args[0]}: unexpected argument "extra"`));
    }
  });

  it('prints usage and exits 2 for an unknown command, or none', async () => {
    for (const args of [['frobnicate'], ['help', 'frobnicate'], []]) {
      const { code, stderr } = await tally(args);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr).toContain('usage: tally <command>');
      if (args.length > 0) expect(stderr).toMatch(/^tally: unknown command "frobnicate"/);
      expect(stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('names the variable of a bad setting, and the command', async () => {
    const { code, stderr } = await tally(['start'], { TALLY_LOG_FORMAT: 'xml' });
    expect(code).toBe(1);
    expect(stderr).toBe('tally start: configuration error: TALLY_LOG_FORMAT: expected pretty or json, got "xml"\n');
  });
});

describe('start-up refusals', () => {
  it('stops with exit 1 and names TALLY_HTTP_PORT when the port is taken, leaving the other node its shards', async () => {
    const database = await createTestDatabase();
    cleanups.push(database.drop);
    const port = await freePort(); // a fixed port: one the kernel picked (0) could never be shared anyway
    const first = await spawnNode({ DATABASE_URL: database.url, TALLY_DATA_DIR: await makeTempDir(), TALLY_HTTP_PORT: String(port) });
    children.push(first);
    const sql = postgres(database.url, { max: 1, onnotice: () => {} });
    cleanups.push(() => sql.end());
    const epochs = async () => (await sql`select sum(epoch)::int as total from shard_fence`)[0]!.total as number;
    const before = await epochs();

    const second = await tally(['start'], {
      DATABASE_URL: database.url,
      TALLY_DATA_DIR: await makeTempDir(),
      TALLY_HTTP_HOST: '127.0.0.1',
      TALLY_HTTP_PORT: String(port),
    });
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(
      `tally start: cannot listen on 127.0.0.1:${port}: the port is already in use by another process; choose another with TALLY_HTTP_PORT (now ${port})\n`,
    );
    expect(await epochs()).toBe(before); // it claimed nothing
    const ready = await apiClient(first.baseUrl)('GET', '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.checks.shards.detail).toBe('1024/1024 served');
    first.child.kill('SIGKILL');
  });

  it('refuses a port another program holds', async () => {
    const port = await freePort();
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port }, resolve));
    cleanups.push(() => new Promise((resolve) => holder.close(() => resolve())));
    const outcome = await tally(['start'], { TALLY_DATA_DIR: await makeTempDir(), TALLY_HTTP_HOST: '127.0.0.1', TALLY_HTTP_PORT: String(port) });
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toContain('TALLY_HTTP_PORT');
  });

  it('names the command and the data directory when migrate finds it in use', async () => {
    const dataDir = await makeTempDir();
    const running = await spawnNode({ TALLY_DATA_DIR: dataDir });
    children.push(running);
    const { code, stderr } = await tally(['migrate'], { TALLY_DATA_DIR: dataDir });
    expect(code).toBe(1);
    expect(stderr).toMatch(/^tally migrate: the data directory is in use by process \d+ \(lock file .*\); stop that process or set TALLY_DATA_DIR/);
    expect(stderr).not.toMatch(/\n\s+at /);
    running.child.kill('SIGKILL');
  });

  it('names the command and the database it cannot reach, without its password, even one with an @', async () => {
    const port = await freePort();
    for (const password of ['hunter2', 'p@ss@word']) {
      const { code, stderr } = await tally(['migrate'], { DATABASE_URL: `postgres://tally:${encodeURIComponent(password)}@127.0.0.1:${port}/tally` });
      expect(code).toBe(1);
      expect(stderr).toBe(`tally migrate: cannot reach the database at postgres://***@127.0.0.1:${port}/tally (DATABASE_URL): ECONNREFUSED\n`);
    }
    const raw = await tally(['migrate'], { DATABASE_URL: `postgres://tally:p@ss@127.0.0.1:${port}/tally` });
    expect(raw.code).toBe(1);
    expect(raw.stderr).toMatch(/^tally migrate: /);
    expect(raw.stderr).not.toMatch(/p@ss|ss@/);
  });

  it('names the database and its refusal, without a stack trace, when it answers but refuses', async () => {
    const database = await createTestDatabase();
    cleanups.push(database.drop);
    const url = new URL(database.url);
    url.pathname = '/no_such_database_here';
    const { code, stderr } = await tally(['migrate'], { DATABASE_URL: url.toString() });
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /^tally migrate: the database at postgres:\/\/.*\/no_such_database_here \(DATABASE_URL\) refused: database "no_such_database_here" does not exist \(SQLSTATE 3D000\)\n$/,
    );
  });
});

describe('logs', () => {
  it('names the URL, the database without its password, and what is not configured, with level names', async () => {
    const database = await createTestDatabase();
    cleanups.push(database.drop);
    const url = new URL(database.url);
    url.username = 'postgres';
    url.password = 'not-logged-pw'; // the local server trusts any password
    const started = await spawnNode({ DATABASE_URL: url.toString(), TALLY_DATA_DIR: await makeTempDir(), TALLY_LOG_LEVEL: 'debug', TALLY_ACCESS_LOG: '1' });
    children.push(started);
    const entries = () => started.logs.flatMap((line) => (line.startsWith('{') ? [JSON.parse(line)] : []));
    const serving = entries().find((entry) => entry.msg === 'tally is serving');
    expect(serving).toMatchObject({
      level: 'info',
      url: started.baseUrl,
      database: `postgres at ${url.host}`,
      nats: 'none (single node)',
      redis: 'none',
      shards: 1024,
    });
    expect(started.logs.find((line) => line.includes('tally is serving'))!.match(/"node":/g)).toHaveLength(1);

    // The access log (test/http/accessLog.test.ts has the rest): method, route, status, duration, request id; never the token.
    const api = apiClient(started.baseUrl);
    const answer = await api('GET', '/v1/user/profile', { token: 'tk_not-a-real-key-but-a-secret', headers: { 'x-request-id': 'probe-1' } });
    expect(answer.status).toBe(401);
    await waitFor(async () => started.logs.some((line) => line.includes('"probe-1"')), 2000);
    const access = entries().find((entry) => entry.request_id === 'probe-1');
    expect(access).toMatchObject({ level: 'info', msg: 'request', method: 'GET', route: '/v1/user/profile', status: 401, request_id: 'probe-1' });
    expect(access.duration_ms).toBeTypeOf('number');
    expect(started.logs.join('\n')).not.toMatch(/not-logged-pw|not-a-real-key/);
    started.child.kill('SIGKILL');
  });

  it('writes readable one-line logs on a terminal', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const dataDir = await makeTempDir();
    // `script` runs the node on a pseudo-terminal, as an operator's shell would.
    const { child, output, exited } = startGroup('script', ['-qfec', `${process.execPath} ${MAIN} start`, '/dev/null'], {
      TERM: 'dumb',
      TALLY_DATA_DIR: dataDir,
      TALLY_HTTP_HOST: '127.0.0.1',
      TALLY_HTTP_PORT: String(port),
    });
    await waitFor(async () => output().includes('tally is serving'), 30_000);
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
    const serving = output()
      .split(/\r?\n/)
      .find((line) => line.includes('tally is serving'))!;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: colours are ANSI escapes
    const plain = serving.replace(/\u001b\[[0-9;]*m/g, '');
    expect(plain).toMatch(new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\] INFO: tally is serving .*"url":"http://127\\.0\\.0\\.1:${port}"`));
    expect(serving.startsWith('{')).toBe(false);
  });
});

describe('a signal while starting', () => {
  it('ends the start, closes the embedded database and exits 0', { timeout: 60_000 }, async () => {
    const dataDir = await makeTempDir();
    const started = startGroup(process.execPath, [MAIN, 'start'], {
      TALLY_DATA_DIR: dataDir,
      TALLY_HTTP_HOST: '127.0.0.1',
      TALLY_HTTP_PORT: '0',
      TALLY_LOG_LEVEL: 'info',
    });
    const { child, exited } = started;
    // Signals are handled from the `starting` line on; the embedded database takes a second or more to open.
    await waitFor(async () => started.output().includes('"msg":"starting"'), 20_000);
    child.kill('SIGTERM');
    expect(await exited, started.output()).toBe(0);
    expect(started.output()).not.toContain('tally is serving');
    // It waited for the database it was opening, closed it, and only then stopped.
    const opened = started.output().indexOf('"msg":"embedded PGlite database"');
    expect(opened, started.output()).toBeGreaterThan(0);
    expect(started.output().indexOf('"msg":"stopped"'), started.output()).toBeGreaterThan(opened);
    // The database was closed, not abandoned: the next process opens it and finds it whole.
    const again = await tally(['migrate'], { TALLY_DATA_DIR: dataDir, TALLY_LOG_LEVEL: 'info' });
    expect(again.code, again.stderr).toBe(0);
  });
});

describe('npm start', () => {
  // npm start builds first (tsc), then starts the node: more than the default 30 s on a busy machine.
  it('passes SIGTERM to the node, which shuts down, exits 0 and leaves nothing listening', { timeout: 120_000 }, async () => {
    const port = await freePort();
    // Its own process group, so that afterAll can stop whatever it started.
    const started = startGroup(
      'npm',
      ['start'],
      { HOME: process.env.HOME ?? '/tmp', TALLY_DATA_DIR: await makeTempDir(), TALLY_HTTP_HOST: '127.0.0.1', TALLY_HTTP_PORT: String(port) },
      ROOT,
    );
    const { child: npm, exited } = started;
    const api = apiClient(`http://127.0.0.1:${port}`);
    await waitFor(async () => (await api('GET', '/health/ready').catch(() => ({ status: 0 }))).status === 200, 60_000);

    npm.kill('SIGTERM'); // the npm process only, as `docker stop` or systemd would signal it
    expect(await exited).toBe(0);
    const text = started.output();
    expect(text).toContain('"signal":"SIGTERM"');
    expect(text).toContain('"msg":"stopped"');
    expect(await refusesConnections(port)).toBe(true);
    await waitFor(async () => !groupAlive(npm.pid!), 5000);
  });
});
