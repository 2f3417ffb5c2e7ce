/**
 * Text is well-formed at the edge. Every string a request brings in — each member name and
 * string value of a JSON body, each path parameter, each header the node keeps — must be
 * well-formed Unicode without U+0000, or the request is refused with a 400 that names the
 * field.
 *
 * Why here, once, for every route: JavaScript strings may hold lone surrogates, which
 * `JSON.parse` accepts from `\ud800` escapes, but Postgres's `json`/`jsonb` refuses them and
 * its `text` cannot hold U+0000. A string that reached a written-behind row (a limiter key
 * derived from an email, an Idempotency-Key) used to make every later flush of the node fail.
 * Non-characters (U+FFFE, U+FDD0…) are well-formed scalar values that Postgres stores, and
 * are accepted.
 */
import { InvalidRequestError } from '../shards/index.js';

/** A lone high surrogate, a lone low surrogate, or U+0000: the first one found. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is exactly what this looks for.
const ILL_FORMED = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `value` may not be stored, or null when it may. */
export function textProblem(value: string): string | null {
  const match = ILL_FORMED.exec(value);
  if (match === null) return null;
  const at = `at character ${match.index}`;
  return match[0] === '\u0000' ? `contains U+0000 ${at}` : `is not well-formed Unicode (a lone surrogate ${at})`;
}

/** Refuses `value` with a 400 naming `field` (a header, a path parameter) unless it is well-formed. */
export function checkText(value: string, field: string): void {
  const problem = textProblem(value);
  if (problem !== null) throw new InvalidRequestError(`${field} ${problem}`);
}

/**
 * Refuses a parsed body (JSON, or MessagePack over NATS) holding an ill-formed string
 * anywhere, as a member name or a value, naming it by JSON Pointer (RFC 6901). Iterative: a
 * body may nest as deep as its size allows. The pointer is built only for the string refused,
 * and binary values (MessagePack bins) are left to the schema, which refuses them: a large
 * body costs one pass over its strings, not a string per element.
 */
export function checkJsonText(body: unknown): void {
  if (typeof body === 'string') {
    checkText(body, 'the body');
    return;
  }
  if (!isContainer(body)) return;
  const stack: Place[] = [{ value: body, parent: null, key: '' }];
  while (stack.length > 0) {
    const place = stack.pop()!;
    const { value } = place;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) visit(value[i], place, i, stack);
      continue;
    }
    for (const name of Object.keys(value)) {
      const problem = textProblem(name);
      if (problem !== null) throw new InvalidRequestError(`a member name in ${place.parent === null ? 'the body' : pointerOf(place)} ${problem}`);
      visit((value as Record<string, unknown>)[name], place, name, stack);
    }
  }
}

/** A container met on the way down, and how it was reached (for the pointer of a refusal). */
interface Place {
  value: object;
  parent: Place | null;
  key: string | number;
}

function isContainer(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !ArrayBuffer.isView(value);
}

function visit(value: unknown, parent: Place, key: string | number, stack: Place[]): void {
  if (typeof value === 'string') {
    const problem = textProblem(value);
    if (problem !== null) throw new InvalidRequestError(`${pointerOf({ value: parent.value, parent, key })} ${problem}`);
  } else if (isContainer(value)) {
    stack.push({ value, parent, key });
  }
}

/** The JSON Pointer of `place`, from the body's root. */
function pointerOf(place: Place): string {
  const parts: string[] = [];
  for (let at: Place | null = place; at !== null && at.parent !== null; at = at.parent) parts.push(escapePointer(String(at.key)));
  return `/${parts.reverse().join('/')}`;
}

/** At most `length` UTF-16 units, never ending inside a surrogate pair. */
export function truncate(value: string, length: number): string {
  if (value.length <= length) return value;
  const last = value.charCodeAt(length - 1);
  return value.slice(0, last >= 0xd800 && last <= 0xdbff ? length - 1 : length);
}

/** RFC 6901 §3: "~" is written "~0" and "/" is written "~1". */
function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}
