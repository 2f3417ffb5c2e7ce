/**
 * The pieces a process's life is made of: the resources a start has opened (closed again,
 * newest first, when the start fails), the ordered steps of a shutdown, and the periodic
 * tasks in between. Keeping them as data lets node.ts state the shutdown order as a list
 * that a reader checks against docs/architecture.md ("Shutdown").
 */
import type { Logger } from 'pino';

/** One step of a shutdown: what the log calls it, and what it does. */
export interface StopStep {
  name: string;
  run(): unknown;
  /**
   * A failure the shutdown expects and gets past (a drain cut short, a leave the lease
   * completes): logged at warn with this message, not reported. Any other failure is logged
   * at error and reported by `runStopSteps`.
   */
  tolerated?: string;
}

/**
 * Runs `steps` one after the other. A step that fails is logged with its name and the
 * shutdown goes on: what one step could not do, the next ones (and, in a cluster, the lease)
 * still make safe. Failures not `tolerated` are thrown together at the end.
 */
export async function runStopSteps(steps: readonly StopStep[], log: Logger): Promise<void> {
  const failures: unknown[] = [];
  for (const step of steps) {
    try {
      await step.run();
    } catch (error) {
      if (step.tolerated !== undefined) {
        log.warn({ err: error, step: step.name }, step.tolerated);
      } else {
        log.error({ err: error, step: step.name }, 'shutdown step failed; going on with the next');
        failures.push(error);
      }
    }
  }
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, `${failures.length} shutdown steps failed`);
}

/** What a start has opened so far, to be closed (newest first) if the start fails. */
export class OpenedResources {
  private readonly closers: StopStep[] = [];

  add(name: string, close: () => unknown): void {
    this.closers.push({ name, run: close, tolerated: 'closing after a failed start: this step failed too' });
  }

  /**
   * Closes everything added, newest first. A close that fails is logged at warn and the rest
   * still close; the start's own error is the one its caller sees.
   */
  closeAll(log: Logger): Promise<void> {
    const steps = this.closers.reverse();
    this.closers.length = 0;
    return runStopSteps(steps, log);
  }
}

/** A periodic task that keeps failing is logged once, then at most this often. */
const FAILURE_LOG_MS = 30_000;

/** Tasks run every so often, each never two at a time, until `stopAll`. */
export class PeriodicTasks {
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly log: Logger) {}

  /**
   * Runs `task` every `intervalMs`, never two at a time. A task that keeps failing is logged
   * when it starts failing, then at most every FAILURE_LOG_MS, and once more when it recovers.
   */
  every(name: string, intervalMs: number, task: () => Promise<unknown>): void {
    let running = false;
    let failures = 0;
    let loggedAt = 0;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      task()
        .then(
          () => {
            if (failures > 0) this.log.info({ task: name, failures }, 'periodic task recovered');
            failures = 0;
          },
          (error: unknown) => {
            failures++;
            const now = Date.now();
            if (failures === 1 || now - loggedAt >= FAILURE_LOG_MS) {
              loggedAt = now;
              this.log.error({ err: error, task: name, failures }, 'periodic task failed; it keeps being retried');
            }
          },
        )
        .finally(() => {
          running = false;
        });
    }, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }

  /** No task starts again; a run in progress finishes on its own. */
  stopAll(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }
}
