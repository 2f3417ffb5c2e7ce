/**
 * The shapes of limits as tiers and overrides declare them, and of the state a client
 * sees. These types are the API contract's `Limit` and `LimitState`, field for field.
 */

export type BudgetPeriod = 'day' | 'month';

interface LimitBase {
  name: string;
  /** When set, the limit applies only to consumes that name this resource. */
  resource?: string;
}

/** GCRA: `limit` units per `period_ms`, at most `burst` (default `limit`) at once. */
export interface RateLimit extends LimitBase {
  kind: 'rate';
  limit: number;
  period_ms: number;
  burst?: number;
}

/** Sliding-window counter: at most `limit` units in any `window_ms`. */
interface WindowLimit extends LimitBase {
  kind: 'window';
  limit: number;
  window_ms: number;
}

/** An allowance per UTC calendar day or month. */
interface BudgetLimit extends LimitBase {
  kind: 'budget';
  limit: number;
  period: BudgetPeriod;
}

export type Limit = RateLimit | WindowLimit | BudgetLimit;

export interface LimitState {
  name: string;
  kind: Limit['kind'];
  limit: number;
  remaining: number;
  /** Epoch milliseconds; rendered as RFC 3339 at the edge. */
  reset_at: number;
  /** The length of the limit's period or window, for the RateLimit-Policy header. */
  window_ms: number;
}
