/** The preferences document: a JSON object, edited by JSON Merge Patch (RFC 7396). */
import { InvalidRequestError, TooLargeError } from './errors.js';

const MAX_PREFERENCES_BYTES = 16 * 1024;
/** Deeper documents are refused before any recursive walk could exhaust the stack. */
const MAX_PREFERENCES_DEPTH = 32;

export type JsonObject = Record<string, unknown>;

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * RFC 7396 §2: a patch that is not an object replaces the target; in an object patch a null
 * member deletes the key, and object members merge recursively.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  assertShallow(patch);
  return merge(target, patch);
}

function merge(target: unknown, patch: unknown): unknown {
  if (!isJsonObject(patch)) return patch;
  const result: JsonObject = isJsonObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    // defineProperty, not assignment: a member named "__proto__" is data, not a prototype.
    else
      Object.defineProperty(result, key, {
        value: merge(Object.hasOwn(result, key) ? result[key] : undefined, value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return result;
}

/** Serialises a document the user may store, or explains why it may not be stored. */
export function serializePreferences(document: unknown): string {
  if (!isJsonObject(document)) throw new InvalidRequestError('preferences must be a JSON object');
  assertShallow(document);
  const text = JSON.stringify(document);
  if (Buffer.byteLength(text) > MAX_PREFERENCES_BYTES) {
    throw new TooLargeError(`preferences are limited to ${MAX_PREFERENCES_BYTES} bytes once merged`);
  }
  return text;
}

/** Iterative depth check: refuses documents nested deeper than MAX_PREFERENCES_DEPTH. */
function assertShallow(value: unknown): void {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth > MAX_PREFERENCES_DEPTH) throw new InvalidRequestError(`preferences may nest at most ${MAX_PREFERENCES_DEPTH} levels`);
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
}
