/**
 * Every process a bench run starts (servers under test, wrk, the micro benchmark child) is
 * registered here, so that none outlives the run: on a normal end, on an error, and on
 * Ctrl-C or SIGTERM. A stop is SIGTERM first (the Redis peer deletes its keys, Tally
 * flushes), then SIGKILL after a grace period.
 */
import { type ChildProcess, type SpawnOptions, type StdioOptions, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const STOP_GRACE_MS = 15_000;
const running = new Set<Child>();

export class Child {
  /** Settles when the process has exited, with its exit code (null if killed by a signal). */
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly process: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      process.once('exit', (code) => {
        running.delete(this);
        resolve(code);
      });
      process.once('error', () => {
        running.delete(this);
        resolve(null);
      });
    });
    running.add(this);
  }

  /**
   * Everything the child writes to its (piped) stdout, once it has exited and the pipe is
   * drained: 'exit' can come before the last of the output, which then reads as nothing.
   */
  async stdout(): Promise<{ code: number | null; output: string }> {
    const stream = this.process.stdout;
    if (stream === null) throw new Error(`${this.name}: stdout is not piped`);
    let output = '';
    stream.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const drained = new Promise<void>((resolve) => {
      if (stream.readableEnded) resolve();
      else stream.once('close', () => resolve());
    });
    const [code] = await Promise.all([this.exited, drained]);
    return { code, output };
  }

  get alive(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace period. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.alive) return;
    this.process.kill('SIGTERM');
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

let stopping = false;

/**
 * Starts `program args` as a registered child, in a process group of its own: Ctrl-C in a
 * terminal then reaches only the runner, which stops its children itself, once each and in
 * order, instead of every process getting the signal at the same moment.
 */
export function startProcess(name: string, program: string, args: string[], options: SpawnOptions = {}): Child {
  if (stopping) throw new Error(`not starting ${name}: the run is stopping`);
  return new Child(name, spawn(program, args, { stdio: ['ignore', 'pipe', 'inherit'], detached: true, ...options }));
}

/** Starts `node args` with the Node binary running us; stdout piped (for `waitForLine`) unless told otherwise. */
export function startNode(name: string, args: string[], env: NodeJS.ProcessEnv = process.env, stdio: StdioOptions = ['ignore', 'pipe', 'inherit']): Child {
  return startProcess(name, process.execPath, args, { env, stdio });
}

/** Resolves with the first stdout line matching `pattern`; rejects if the child exits first. */
export function waitForLine(child: Child, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
  const stdout = child.process.stdout;
  if (stdout === null) return Promise.reject(new Error(`${child.name}: stdout is not piped`));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: stdout });
    const timer = setTimeout(() => finish(new Error(`${child.name}: no line matching ${pattern} within ${timeoutMs} ms`)), timeoutMs);
    let settled = false;
    const finish = (outcome: RegExpExecArray | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      lines.off('line', onLine);
      // Keep draining stdout so that a chatty child never blocks on a full pipe.
      lines.on('line', () => {});
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onLine = (line: string) => {
      const match = pattern.exec(line);
      if (match !== null) finish(match);
    };
    lines.on('line', onLine);
    void child.exited.then((code) => finish(new Error(`${child.name} exited (code ${code}) before printing a line matching ${pattern}`)));
  });
}

/** Stops every child still running, all at once, and waits for them; starts no more. */
export async function stopAll(): Promise<void> {
  stopping = true;
  await Promise.all([...running].map((child) => child.stop(3_000)));
}

function killAllNow(): void {
  for (const child of running) if (child.alive) child.process.kill('SIGKILL');
}

// `exit` handlers cannot wait: anything still alive at that point is killed outright.
process.once('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    console.error(`\n[bench] ${signal}: stopping ${running.size} child process(es)`);
    stopAll().finally(() => process.exit(130));
  });
}
process.once('uncaughtException', (error) => {
  console.error(error);
  stopAll().finally(() => process.exit(1));
});
