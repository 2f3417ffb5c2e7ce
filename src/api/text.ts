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
 * Refuses a parsed JSON body holding an ill-formed string anywhere, as a member name or a
 * value, naming it by JSON Pointer (RFC 6901). Iterative: a body may nest as deep as its
 * 64 KiB allow.
 */
export function checkJsonText(body: unknown): void {
  if (typeof body === 'string') {
    checkText(body, 'the body');
    return;
  }
  if (typeof body !== 'object' || body === null) return;
  const stack: [value: object, pointer: string][] = [[body, '']];
  while (stack.length > 0) {
    const [value, pointer] = stack.pop()!;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) visit(value[i], `${pointer}/${i}`, stack);
      continue;
    }
    for (const name of Object.keys(value)) {
      const problem = textProblem(name);
      if (problem !== null) throw new InvalidRequestError(`a member name in ${pointer === '' ? 'the body' : pointer} ${problem}`);
      visit((value as Record<string, unknown>)[name], `${pointer}/${escapePointer(name)}`, stack);
    }
  }
}

/** At most `length` UTF-16 units, never ending inside a surrogate pair. */
export function truncate(value: string, length: number): string {
  if (value.length <= length) return value;
  const last = value.charCodeAt(length - 1);
  return value.slice(0, last >= 0xd800 && last <= 0xdbff ? length - 1 : length);
}

function visit(value: unknown, pointer: string, stack: [object, string][]): void {
  if (typeof value === 'string') checkText(value, pointer);
  else if (typeof value === 'object' && value !== null) stack.push([value, pointer]);
}

/** RFC 6901 §3: "~" is written "~0" and "/" is written "~1". */
function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}
