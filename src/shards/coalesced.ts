/**
 * A task made safe to ask for at any rate (the write-behind's flushes, the node's tier
 * reloads): a call while it runs asks for one more run after it, however many calls come
 * meanwhile; a call while idle runs it at once. The returned promise settles when a run that
 * started after the call has ended, with that run's outcome. Never two runs at once.
 */
export interface Coalesced<T> {
  (): Promise<T>;
  /** Settles once the run in progress and the one queued behind it, if any, have ended, whatever their outcome. */
  idle(): Promise<void>;
}

export function coalesced<T>(task: () => Promise<T>): Coalesced<T> {
  let running: Promise<T> | null = null;
  let next: Promise<T> | null = null;
  const start = (): Promise<T> => {
    const run = task().finally(() => {
      running = null;
    });
    running = run;
    return run;
  };
  const runCoalesced = (): Promise<T> => {
    // Between a run's end and the queued run's start, `running` is null but `next` is not:
    // a call then joins `next` rather than start a run beside it.
    if (next !== null) return next;
    if (running === null) return start();
    next = running
      .catch(() => {
        // The earlier run's failure belongs to its own callers; this call waits for a run of its own.
      })
      .then(() => {
        next = null;
        return start();
      });
    return next;
  };
  return Object.assign(runCoalesced, {
    async idle(): Promise<void> {
      await (next ?? running)?.catch(() => undefined);
    },
  });
}
