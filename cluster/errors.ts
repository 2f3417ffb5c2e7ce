/**
 * How a `tally cluster` command ends without doing what was asked, besides a usage mistake
 * (`UsageError`, exit code 2, shared with `tally` itself in src/node).
 */

/** A command that ran but could not do what was asked (refused, timed out, interrupted): exit code 1. */
export class NotDoneError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NotDoneError';
  }
}
