/**
 * The flat parser must never disagree with JSON.parse: whatever it returns is what
 * JSON.parse returns for the same bytes, and it declines (undefined) everything else.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { schemas } from '../api/index.js';
import { flatFieldsOf, flatMapsOf, parseFlatObject } from './flatJson.js';

const { ConsumeBody, LimiterBody, LoginBody, LogoutAllBody, RegisterBody, ReserveBody, SettleBody } = schemas;

const FIELDS = ['cost', 'resource'] as const;
const MAPS = ['amounts'] as const;
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** JSON text near the flat shape: the right and wrong members, odd numbers and strings, whitespace. */
const space = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ', '\u00a0');
const member = fc.oneof(
  fc.constantFrom('"cost"', '"resource"', '"amounts"', '"other"', '"co\\u0073t"', '"cost "', '"__proto__"'),
  fc.string({ maxLength: 6 }).map((name) => JSON.stringify(name)),
);
/** A map of amounts, or something near one. */
const mapValue = fc
  .tuple(
    space,
    fc.array(
      fc.tuple(
        space,
        fc.oneof({ weight: 1, arbitrary: member }, { weight: 3, arbitrary: fc.constantFrom('"tokens"', '"a"', '"é"', '"t\\u006b"', '"__proto__"') }),
        space,
        fc.constantFrom('1', '0', '1500', '123456789012345', '1', '01', '1.5', '-1', '"5"', '{}', 'null'),
        space,
      ),
      {
        maxLength: 3,
      },
    ),
    fc.constantFrom('', ','),
  )
  .map(([lead, members, trailing]) => `{${lead}${members.map(([a, name, b, v, c]) => `${a}${name}${b}:${v}${c}`).join(',')}${trailing}}`);
const value = fc.oneof(
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map(String),
  fc.constantFrom(
    '0',
    '00',
    '01',
    '-1',
    '1.0',
    '1e3',
    '1E3',
    '9999999999999999',
    '123456789012345',
    '1234567890123456',
    'true',
    'null',
    '[]',
    '{}',
    '"a\\"b"',
    '"é"',
    '""',
    '"\\u0000"',
  ),
  fc.string({ maxLength: 8 }).map((text) => JSON.stringify(text)),
  fc.string({ maxLength: 8 }),
  mapValue,
);
const objectText = fc
  .tuple(space, fc.array(fc.tuple(space, member, space, value, space), { maxLength: 4 }), space, fc.constantFrom('', ' ', 'x', ','))
  .map(([lead, members, tail, after]) => `${lead}{${members.map(([a, name, b, v, c]) => `${a}${name}${b}:${v}${c}`).join(',')}}${tail}${after}`);

function jsonParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return Symbol.for('invalid');
  }
}

describe('parseFlatObject', () => {
  it('returns exactly what JSON.parse returns, or declines', () => {
    let read = 0;
    fc.assert(
      fc.property(objectText, (text) => {
        const fast = parseFlatObject(bytes(text), FIELDS, MAPS);
        if (fast === undefined) return;
        read++;
        expect(fast).toStrictEqual(jsonParse(text));
      }),
      { numRuns: 5000 },
    );
    // The inputs are near enough to the flat shape that many are read, not only declined.
    expect(read).toBeGreaterThan(250);
  });

  it('returns exactly what JSON.parse returns for a map, or declines', () => {
    let read = 0;
    fc.assert(
      fc.property(mapValue, fc.constantFrom('', '"cost":1,'), (map, before) => {
        const text = `{${before}"amounts":${map}}`;
        const fast = parseFlatObject(bytes(text), FIELDS, MAPS);
        if (fast === undefined) return;
        read++;
        expect(fast).toStrictEqual(jsonParse(text));
        if (typeof fast.amounts === 'object') expect(Object.getPrototypeOf(fast.amounts)).toBe(Object.prototype);
      }),
      { numRuns: 3000 },
    );
    expect(read).toBeGreaterThan(250);
  });

  it('reads every flat body of the consume route, with any JSON whitespace', () => {
    const name = fc.stringMatching(/^[ -!#-[\]-~]{0,64}$/);
    const amount = fc.integer({ min: 0, max: 999_999_999_999_999 });
    const body = fc.record(
      {
        cost: amount,
        resource: name,
        amounts: fc.dictionary(
          name.filter((key) => key !== '__proto__'),
          amount,
          { maxKeys: 4 },
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(body, fc.integer({ min: 0, max: 4 }), (value, indent) => {
        const text = JSON.stringify(value, null, indent);
        expect(parseFlatObject(bytes(text), FIELDS, MAPS)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 2000 },
    );
  });

  it.each([
    ['a duplicate member', '{"cost":1,"cost":2}'],
    ['an unknown member', '{"cost":1,"extra":2}'],
    ['an escape in a string', '{"resource":"a\\nb"}'],
    ['an escaped member name', '{"co\\u0073t":1}'],
    ['a non-ASCII string', '{"resource":"é"}'],
    ['a leading zero', '{"cost":01}'],
    ['a fraction', '{"cost":1.5}'],
    ['an exponent', '{"cost":1e3}'],
    ['a negative number', '{"cost":-1}'],
    ['a 16-digit number', '{"cost":1234567890123456}'],
    ['a nested value', '{"cost":{"a":1}}'],
    ['a map of strings', '{"amounts":{"a":"1"}}'],
    ['a map with a duplicate', '{"amounts":{"a":1,"a":2}}'],
    ['a map member named __proto__', '{"amounts":{"__proto__":1}}'],
    ['a nested map', '{"amounts":{"a":{}}}'],
    ['a trailing comma in a map', '{"amounts":{"a":1,}}'],
    ['text after the object', '{"cost":1} x'],
    ['a trailing comma', '{"cost":1,}'],
    ['an array', '[1]'],
    ['an empty body', ''],
    ['an unterminated string', '{"resource":"abc'],
  ])('declines %s', (_, text) => {
    expect(parseFlatObject(bytes(text), FIELDS, MAPS)).toBeUndefined();
  });

  it('reads the empty object and surrounding whitespace', () => {
    expect(parseFlatObject(bytes(' \r\n{ }\t'), FIELDS)).toStrictEqual({});
    expect(parseFlatObject(bytes('{"cost" : 0 , "resource" : ""}'), FIELDS)).toStrictEqual({ cost: 0, resource: '' });
  });
});

describe('flatFieldsOf', () => {
  it('takes the integer and string members of object schemas', () => {
    expect(flatFieldsOf(ConsumeBody)).toEqual(['cost', 'resource']);
    expect(flatFieldsOf(SettleBody)).toEqual(['actual']);
    expect(flatFieldsOf(ReserveBody)).toEqual(['cost', 'resource', 'ttl_ms']);
    expect(flatFieldsOf(LimiterBody)).toEqual(['key', 'limit', 'window_ms', 'cost']);
    // `name` may be null and `device` is an object: bodies with them take JSON.parse.
    expect(flatFieldsOf(RegisterBody)).toEqual(['email', 'password', 'tier']);
    expect(flatFieldsOf(LoginBody)).toEqual(['email', 'password']);
    expect(flatFieldsOf(LogoutAllBody)).toBeNull();
  });

  it('reads maps of integers where the schema has them', () => {
    expect(flatMapsOf(ConsumeBody)).toEqual(['amounts']);
    expect(flatMapsOf(SettleBody)).toEqual(['amounts']);
    expect(flatMapsOf(RegisterBody)).toEqual([]);
    expect(parseFlatObject(bytes('{"cost":1,"amounts":{"tokens":1500}}'), flatFieldsOf(ConsumeBody)!, flatMapsOf(ConsumeBody))).toStrictEqual({
      cost: 1,
      amounts: { tokens: 1500 },
    });
  });

  it('leaves a body with a member it does not read to JSON.parse', () => {
    expect(parseFlatObject(bytes('{"cost":1,"amounts":{"tokens":1500}}'), flatFieldsOf(ConsumeBody)!)).toBeUndefined();
    expect(parseFlatObject(bytes('{"name":null,"email":"a@b.c"}'), flatFieldsOf(RegisterBody)!)).toBeUndefined();
  });
});
