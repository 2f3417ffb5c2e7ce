import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashApiKey, issueApiKey, parseApiKey } from './ids.js';

/** The key format as a regular expression: the parser's character loops must agree with it. */
const KEY = /^tk_(u[a-z2-7]{20})_(k[a-z2-7]{12})_([A-Za-z0-9_-]{43})$/;

describe('parseApiKey', () => {
  it('reads the user id, key id and hash of an issued key', () => {
    const issued = issueApiKey('uabcdefghijklmnopqrst');
    expect(parseApiKey(issued.key)).toEqual({ userId: issued.userId, keyId: issued.keyId, hash: issued.hash });
    expect(issued.hash).toBe(hashApiKey(issued.key));
  });

  it('agrees with the format on keys with one character changed, added or removed', () => {
    const key = issueApiKey('uabcdefghijklmnopqrst').key;
    const edit = fc.tuple(fc.integer({ min: 0, max: key.length }), fc.constantFrom('replace', 'insert', 'delete'), fc.constantFrom(...'aAz27819_-u k.\u00e9/+=\n'));
    fc.assert(
      fc.property(edit, ([at, how, char]) => {
        const changed = how === 'replace' ? key.slice(0, at) + char + key.slice(at + 1) : how === 'insert' ? key.slice(0, at) + char + key.slice(at) : key.slice(0, at) + key.slice(at + 1);
        const match = KEY.exec(changed);
        const parsed = parseApiKey(changed);
        if (match === null) expect(parsed).toBeNull();
        else expect(parsed).toEqual({ userId: match[1], keyId: match[2], hash: hashApiKey(changed) });
      }),
      { numRuns: 3_000 },
    );
  });
});
