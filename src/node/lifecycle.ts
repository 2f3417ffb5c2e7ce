/**
 * The pieces a process's life is made of: the resources a start has opened (closed again,
 * newest first, when the start fails), the ordered steps of a shutdown, and the periodic
 * tasks in between. Keeping them as data lets node.ts state the shutdown order as a list
 * that a reader checks against docs/operations.md.
 */
import type { Logger } from 'pino';

/** One step of a shutdown: what the log calls it, and what it does. */
export interface StopStep {
  name: string;
  run(): unknown;
}

/**
 * Runs `steps` one after the other. A step that fails is logged with its name and the
 * shutdown goes on: what one step could not do, the next ones (and, in a cluster, the lease)
 * still make safe.
 */
export async function runStopSteps(steps: readonly StopStep[], log: Logger): Promise<void> {
  for (const step of steps) {
    try {
      await step.run();
    } catch (error) {
      log.error({ err: error, step: step.name }, 'shutdown step failed; going on with the next');
    }
  }
}

/** What a start has opened so far, to be closed (newest first) if the start fails. */
export class OpenedResources {
  private readonly closers: StopStep[] = [];

  add(name: string, close: () => unknown): void {
    this.closers.push({ name, run: close });
  }

  /** Closes everything added, newest first; a close that fails is logged, and the rest still close. */
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
