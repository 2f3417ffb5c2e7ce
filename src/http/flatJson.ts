/**
 * A parser for the small, flat bodies of the hot routes (`{"cost":1}`), which would
 * otherwise pay for UTF-8 decoding and the generic JSON parser on every request.
 *
 * It reads only a JSON object whose members are among `fields`, each at most once, whose
 * values are non-negative integers of up to 15 digits or strings of printable ASCII without
 * escapes, and, for the members named in `maps`, objects of such integers under such names
 * (`"amounts":{"tokens":1500}`). For anything else — another member, a duplicate, an escape,
 * a non-ASCII byte, a fraction, an exponent, a sign, a longer number, another nested value,
 * a member named `__proto__` — it returns undefined and the body takes the generic path
 * (`JSON.parse`). So whatever it returns is exactly what
 * `JSON.parse` returns for the same bytes, and the route's schema is checked on it as usual.
 */

import type { TSchema } from '@sinclair/typebox';

export type FlatObject = Record<string, number | string | Record<string, number>>;

const NO_MAPS: readonly string[] = [];

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

export function parseFlatObject(bytes: Uint8Array, fields: readonly string[], maps = NO_MAPS): FlatObject | undefined {
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== OPEN) return undefined;
  i = skipSpace(bytes, i + 1);
  const result: FlatObject = {};
  if (bytes[i] !== CLOSE) {
    for (;;) {
      if (bytes[i] !== QUOTE) return undefined;
      const nameEnd = plainStringEnd(bytes, i + 1);
      if (nameEnd < 0) return undefined;
      const name = fieldNamed(bytes, i + 1, nameEnd, fields) ?? fieldNamed(bytes, i + 1, nameEnd, maps);
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
      } else if (first === OPEN) {
        if (!maps.includes(name)) return undefined;
        const map: Record<string, number> = {};
        i = readIntegerMap(bytes, i, map);
        if (i < 0) return undefined;
        result[name] = map;
      } else {
        const valueEnd = integerEnd(bytes, i);
        if (valueEnd < 0) return undefined;
        result[name] = integerValue(bytes, i, valueEnd);
        i = valueEnd;
      }
      i = skipSpace(bytes, i);
      if (bytes[i] === CLOSE) break;
      if (bytes[i] !== COMMA) return undefined;
      i = skipSpace(bytes, i + 1);
    }
  }
  return skipSpace(bytes, i + 1) === bytes.length ? result : undefined;
}

/** Reads `{"name":integer,...}` at `i` into `into`; the index after its `}`, or -1. */
function readIntegerMap(bytes: Uint8Array, i: number, into: Record<string, number>): number {
  i = skipSpace(bytes, i + 1);
  if (bytes[i] === CLOSE) return i + 1;
  for (;;) {
    if (bytes[i] !== QUOTE) return -1;
    const nameEnd = plainStringEnd(bytes, i + 1);
    if (nameEnd < 0) return -1;
    const name = mapName(bytes, i + 1, nameEnd);
    // Assigning "__proto__" would set the prototype, where JSON.parse makes a member.
    if (name === '__proto__' || Object.hasOwn(into, name)) return -1;
    i = skipSpace(bytes, nameEnd + 1);
    if (bytes[i] !== COLON) return -1;
    i = skipSpace(bytes, i + 1);
    const valueEnd = integerEnd(bytes, i);
    if (valueEnd < 0) return -1;
    into[name] = integerValue(bytes, i, valueEnd);
    i = skipSpace(bytes, valueEnd);
    if (bytes[i] === CLOSE) return i + 1;
    if (bytes[i] !== COMMA) return -1;
    i = skipSpace(bytes, i + 1);
  }
}

/**
 * Names met in maps lately. Clients send the same few (`tokens`), and comparing bytes with
 * a kept string is several times cheaper than decoding a new one each time.
 */
const seenNames: string[] = [];
const SEEN_NAMES = 16;
let nextSeen = 0;

function mapName(bytes: Uint8Array, from: number, to: number): string {
  const seen = fieldNamed(bytes, from, to, seenNames);
  if (seen !== undefined) return seen;
  const name = latin1.decode(bytes.subarray(from, to));
  seenNames[nextSeen] = name;
  nextSeen = (nextSeen + 1) % SEEN_NAMES;
  return name;
}

/** The end of the integer at `i`, or -1: no sign, no leading zeros (JSON forbids them), no fraction or exponent, at most 15 digits. */
function integerEnd(bytes: Uint8Array, i: number): number {
  const first = bytes[i];
  if (first === undefined || first < ZERO || first > NINE) return -1;
  let j = i + 1;
  while (j < bytes.length && bytes[j]! >= ZERO && bytes[j]! <= NINE) j++;
  if ((first === ZERO && j > i + 1) || j - i > MAX_DIGITS || bytes[j] === 0x2e || bytes[j] === 0x65 || bytes[j] === 0x45) return -1;
  return j;
}

function integerValue(bytes: Uint8Array, from: number, to: number): number {
  let value = 0;
  for (let j = from; j < to; j++) value = value * 10 + (bytes[j]! - ZERO);
  return value;
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
 * The members of a body schema the flat parser reads as scalars: the integer and string
 * properties of an object schema. A body with another member the parser does not read as a
 * map (see flatMapsOf) takes the generic path. Null when there are none.
 */
export function flatFieldsOf(schema: TSchema): readonly string[] | null {
  const properties = propertiesOf(schema);
  const names = Object.keys(properties).filter((name) => properties[name]!.type === 'integer' || properties[name]!.type === 'string');
  return names.length === 0 ? null : names;
}

/** The members of a body schema the flat parser reads as maps: objects of integers under any name (`amounts`). */
export function flatMapsOf(schema: TSchema): readonly string[] {
  const properties = propertiesOf(schema);
  return Object.keys(properties).filter((name) => {
    const values = Object.values((properties[name]!.patternProperties ?? {}) as Record<string, TSchema>);
    return properties[name]!.type === 'object' && values.length === 1 && values[0]!.type === 'integer';
  });
}

function propertiesOf(schema: TSchema): Record<string, TSchema> {
  if (schema.type !== 'object' || typeof schema.properties !== 'object' || schema.properties === null) return {};
  return schema.properties as Record<string, TSchema>;
}
