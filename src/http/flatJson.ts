/**
 * A parser for the small, flat bodies of the hot routes (`{"cost":1}`), which would
 * otherwise pay for UTF-8 decoding and the generic JSON parser on every request.
 *
 * It reads only a JSON object whose members are among `fields`, each at most once, whose
 * values are non-negative integers of up to 15 digits or strings of printable ASCII without
 * escapes. For anything else — another member, a duplicate, an escape, a non-ASCII byte, a
 * fraction, an exponent, a sign, a longer number, a nested value — it returns undefined and
 * the body takes the generic path (`JSON.parse`). So whatever it returns is exactly what
 * `JSON.parse` returns for the same bytes, and the route's schema is checked on it as usual.
 */

import type { TSchema } from '@sinclair/typebox';

export type FlatObject = Record<string, number | string>;

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const ZERO = 0x30;
const NINE = 0x39;
const MAX_DIGITS = 15; // below 2^53: every such integer is exact

const latin1 = new TextDecoder('latin1');

export function parseFlatObject(bytes: Uint8Array, fields: readonly string[]): FlatObject | undefined {
  const end = bytes.length;
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== OPEN) return undefined;
  i = skipSpace(bytes, i + 1);
  const result: FlatObject = {};
  if (bytes[i] !== CLOSE) {
    for (;;) {
      if (bytes[i] !== QUOTE) return undefined;
      const nameEnd = plainStringEnd(bytes, i + 1);
      if (nameEnd < 0) return undefined;
      const name = fieldNamed(bytes, i + 1, nameEnd, fields);
      if (name === undefined || Object.hasOwn(result, name)) return undefined;
      i = skipSpace(bytes, nameEnd + 1);
      if (bytes[i] !== COLON) return undefined;
      i = skipSpace(bytes, i + 1);
      const first = bytes[i];
      if (first === QUOTE) {
        const valueEnd = plainStringEnd(bytes, i + 1);
        if (valueEnd < 0) return undefined;
        result[name] = latin1.decode(bytes.subarray(i + 1, valueEnd));
        i = valueEnd + 1;
      } else if (first !== undefined && first >= ZERO && first <= NINE) {
        let value = first - ZERO;
        let j = i + 1;
        while (j < end && bytes[j]! >= ZERO && bytes[j]! <= NINE) value = value * 10 + (bytes[j++]! - ZERO);
        // No leading zeros (JSON forbids them), no fraction or exponent, no long numbers.
        if ((first === ZERO && j > i + 1) || j - i > MAX_DIGITS || bytes[j] === 0x2e || bytes[j] === 0x65 || bytes[j] === 0x45) return undefined;
        result[name] = value;
        i = j;
      } else {
        return undefined;
      }
      i = skipSpace(bytes, i);
      if (bytes[i] === CLOSE) break;
      if (bytes[i] !== COMMA) return undefined;
      i = skipSpace(bytes, i + 1);
    }
  }
  return skipSpace(bytes, i + 1) === end ? result : undefined;
}

function skipSpace(bytes: Uint8Array, i: number): number {
  for (;;) {
    const c = bytes[i];
    if (c !== SPACE && c !== LF && c !== CR && c !== TAB) return i;
    i++;
  }
}

/** The index of the closing quote of a string of printable ASCII without escapes, or -1. */
function plainStringEnd(bytes: Uint8Array, from: number): number {
  for (let i = from; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === QUOTE) return i;
    if (c < SPACE || c > 0x7e || c === BACKSLASH) return -1;
  }
  return -1;
}

function fieldNamed(bytes: Uint8Array, from: number, to: number, fields: readonly string[]): string | undefined {
  next: for (const field of fields) {
    if (field.length !== to - from) continue;
    for (let k = 0; k < field.length; k++) if (field.charCodeAt(k) !== bytes[from + k]) continue next;
    return field;
  }
  return undefined;
}

/**
 * The members of a body schema the flat parser can read: those of an object schema whose
 * properties are all integers or strings. Null for any other schema (the route then always
 * takes the generic path).
 */
export function flatFieldsOf(schema: TSchema): readonly string[] | null {
  if (schema.type !== 'object' || typeof schema.properties !== 'object' || schema.properties === null) return null;
  const properties = schema.properties as Record<string, TSchema>;
  const names = Object.keys(properties);
  if (names.length === 0) return null;
  for (const name of names) {
    const type = properties[name]!.type;
    if (type !== 'integer' && type !== 'string') return null;
  }
  return names;
}
