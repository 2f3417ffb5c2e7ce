/**
 * A mistake in how a `tally` command was called: usage is printed and the exit code is 2.
 * `tally` and `tally cluster` parse their arguments apart, but a mistake in either is the
 * same mistake, so both throw this class.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
