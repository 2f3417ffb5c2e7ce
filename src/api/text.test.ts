import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../shards/index.js';
import { checkJsonText, checkText, textProblem, truncate } from './text.js';

const problemOf = (body: unknown): string | null => {
  try {
    checkJsonText(body);
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidRequestError);
    return (error as Error).message;
  }
};

describe('textProblem', () => {
  it('accepts well-formed text, surrogate pairs and non-characters included', () => {
    for (const ok of ['', 'ada@example.com', 'Grüße 👋', '\uD83D\uDE00', '\uFFFE\uFFFF\uFDD0', 'tab\tand\nnewline', '\u007F']) {
      expect(textProblem(ok), JSON.stringify(ok)).toBeNull();
    }
  });

  it('names a lone high, a lone low or a reversed pair, and U+0000, with where it is', () => {
    expect(textProblem('\uD800@a.com')).toBe('is not well-formed Unicode (a lone surrogate at character 0)');
    expect(textProblem('ab\uDC00')).toBe('is not well-formed Unicode (a lone surrogate at character 2)');
    expect(textProblem('x\uDE00\uD83D')).toBe('is not well-formed Unicode (a lone surrogate at character 1)');
    expect(textProblem('a\u0000b')).toBe('contains U+0000 at character 1');
  });

  it('agrees with String.prototype.isWellFormed on arbitrary UTF-16', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.string({ unit: fc.integer({ min: 0xd7f0, max: 0xe010 }).map((c) => String.fromCharCode(c)), maxLength: 8 }),
        (a, b) => {
          const text = a + b;
          const wellFormed = (text as unknown as { isWellFormed(): boolean }).isWellFormed() && !text.includes('\u0000');
          expect(textProblem(text) === null).toBe(wellFormed);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('checkJsonText', () => {
  it('names the field by JSON Pointer, member names included', () => {
    expect(problemOf({ email: '\uD800@a.com', password: 'x' })).toBe('/email is not well-formed Unicode (a lone surrogate at character 0)');
    expect(problemOf({ device: { name: 'ok', type: 'a\u0000' } })).toBe('/device/type contains U+0000 at character 1');
    expect(problemOf({ list: ['fine', ['\uDFFF']] })).toBe('/list/1/0 is not well-formed Unicode (a lone surrogate at character 0)');
    expect(problemOf({ 'a/b~c': { '\uD800': 1 } })).toBe('a member name in /a~1b~0c is not well-formed Unicode (a lone surrogate at character 0)');
    expect(problemOf({ '\u0000': true })).toBe('a member name in the body contains U+0000 at character 0');
    expect(problemOf('\uD800')).toBe('the body is not well-formed Unicode (a lone surrogate at character 0)');
  });

  it('passes every other JSON value, however deep', () => {
    let deep: unknown = 'leaf 👋';
    for (let i = 0; i < 50_000; i++) deep = [deep];
    for (const ok of [null, 1, true, 'x', { a: [1, { b: 'c' }] }, deep]) expect(problemOf(ok)).toBeNull();
  });
});

describe('checkText and truncate', () => {
  it('names the field it was given', () => {
    expect(() => checkText('k\uD800', 'the Idempotency-Key header')).toThrow(
      'the Idempotency-Key header is not well-formed Unicode (a lone surrogate at character 1)',
    );
  });

  it('never cuts a surrogate pair in two', () => {
    expect(truncate('ab👋', 3)).toBe('ab');
    expect(truncate('ab👋', 4)).toBe('ab👋');
    expect(truncate('abcd', 2)).toBe('ab');
    expect(textProblem(truncate('x'.repeat(511) + '👋'.repeat(3), 512))).toBeNull();
  });
});
