/**
 * Batches of the service API: `quota.consume` and `quota.get` take one item or `{items: […]}`
 * (1 to 1000). Each item is read and decided on its own and answered in its place in
 * `{results: […]}`; an item that failed is `{error: problem}` there, and only a malformed
 * envelope fails the whole request.
 */
import { type Problem, serviceProblem } from './problem.js';
import { NatsBatch } from './schemas.js';
import { compile } from './validate.js';

const envelope = compile(NatsBatch);

/**
 * One item, or `{items}`: each item decided on its own, answered in order. All items are
 * started before any is awaited, so the router batches those for one owner together.
 */
export function batchable(one: (item: unknown) => unknown, failedItem: (error: unknown) => unknown): (body: unknown) => unknown {
  return function oneOrBatch(body) {
    if (body === null || typeof body !== 'object' || !('items' in body)) return one(body);
    const { items } = envelope(body);
    const results: unknown[] = new Array(items.length);
    const pending: Promise<void>[] = [];
    for (let i = 0; i < items.length; i++) {
      try {
        const answer = one(items[i]);
        if (answer instanceof Promise) {
          pending.push(
            answer.then(
              (value) => {
                results[i] = value;
              },
              (error: unknown) => {
                results[i] = failedItem(error);
              },
            ),
          );
        } else {
          results[i] = answer;
        }
      } catch (error) {
        results[i] = failedItem(error);
      }
    }
    if (pending.length === 0) return { results };
    return Promise.all(pending).then(() => ({ results }));
  };
}

/** A failed item's answer: its problem, as the same request alone would have got it. */
export function itemError(error: unknown): { error: Problem } {
  return { error: serviceProblem(error).problem };
}
