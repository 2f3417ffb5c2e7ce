/**
 * What a request charges each limit. A request brings a `cost` and, optionally, amounts of
 * named resources (`{cost: 1, amounts: {tokens: 1500}}`: one request and its tokens):
 * - a limit without a resource is charged `cost`;
 * - a limit naming the request's `resource` ("default" when it names none) is charged
 *   `cost` too, which is what a request of one resource meant before amounts existed;
 * - a limit naming another resource is charged the request's amount of it, and does not
 *   apply at all when the request has none (an amount of 0 is the same as none).
 * A resource is named once: `amounts` may not give the request's `resource` an amount.
 */
import { assertAmount } from './amounts.js';
import type { Limit } from './limits.js';

export const DEFAULT_RESOURCE = 'default';

export interface Charge {
  readonly cost: number;
  /** The resource `cost` is charged to besides the limits without one; DEFAULT_RESOURCE when absent. */
  readonly resource?: string | undefined;
  /** Amounts of other resources, by name. */
  readonly amounts?: Readonly<Record<string, number>> | null | undefined;
}

/** The amount `charge` puts on `limit`; 0 when the limit does not apply to it. */
export function amountFor(limit: Limit, charge: Charge): number {
  const resource = limit.resource;
  if (resource === undefined || resource === (charge.resource ?? DEFAULT_RESOURCE)) return charge.cost;
  const amounts = charge.amounts;
  return amounts != null && Object.hasOwn(amounts, resource) ? amounts[resource]! : 0;
}

/** Guards the pure core: whole units, and no resource named twice. `minCost` is 1 for a consume or reserve, 0 for a settlement. */
export function assertCharge(charge: Charge, minCost: number): void {
  assertAmount('cost', charge.cost, minCost);
  const amounts = charge.amounts;
  if (amounts == null) return;
  assertAmounts(amounts);
  const twice = namedTwice(charge);
  if (twice !== null) throw new RangeError(twice);
}

/** Why `charge` names a resource twice (in `amounts`, with an amount, and as its `resource`), or null. */
export function namedTwice(charge: Charge): string | null {
  const resource = charge.resource ?? DEFAULT_RESOURCE;
  const amounts = charge.amounts;
  if (amounts == null || !Object.hasOwn(amounts, resource) || !(amounts[resource]! > 0)) return null;
  return `amounts names "${resource}", the resource that cost is charged to: name each resource once`;
}

export function assertAmounts(amounts: Readonly<Record<string, number>>): void {
  for (const name of Object.keys(amounts)) assertAmount(`the amount of "${name}"`, amounts[name]!, 0);
}

/** The amounts without zeros (which charge nothing), or null when none are left. */
export function nonZeroAmounts(amounts: Readonly<Record<string, number>> | null | undefined): Readonly<Record<string, number>> | null {
  if (amounts == null) return null;
  const entries = Object.entries(amounts).filter(([, amount]) => amount > 0);
  return entries.length === 0 ? null : Object.freeze(Object.fromEntries(entries));
}

/**
 * A canonical text of a charge, equal exactly for equal charges: the same cost, resource and
 * non-zero amounts. Without amounts it is `cost:resource`, as before amounts existed, so
 * Idempotency-Keys remembered then still match; with them, a JSON array (never a digit first).
 */
export function chargeText(charge: Charge): string {
  const resource = charge.resource ?? DEFAULT_RESOURCE;
  const amounts = nonZeroAmounts(charge.amounts);
  if (amounts === null) return `${charge.cost}:${resource}`;
  const names = Object.keys(amounts).sort();
  return JSON.stringify([charge.cost, resource, names.map((name) => [name, amounts[name]])]);
}
