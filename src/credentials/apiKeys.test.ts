/**
 * The edge's memo of recently seen API keys: bounded whatever the number of keys, and a key
 * in steady use stays in it while a stream of others passes through.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { newUserId, UnauthenticatedError } from '../shards/index.js';
import { ApiKeys } from './apiKeys.js';

describe('the API-key memo', () => {
  it('holds at most 16,384 keys however many pass through, and keeps the one in steady use', () => {
    const keys = new ApiKeys(randomBytes(32), new Map());
    const steady = keys.issue(newUserId());
    keys.caller(steady.key);
    const first = keys.caller(steady.key);
    expect(first).toMatchObject({ userId: steady.userId, credential: { kind: 'key', keyId: steady.keyId } });
    for (let i = 0; i < 50_000; i++) {
      const other = keys.issue(newUserId());
      // Each used twice: remembered from the second use.
      expect(keys.caller(other.key).userId).toBe(other.userId);
      expect(keys.caller(other.key).userId).toBe(other.userId);
      // Remembered: the same answer, not a second parse and MAC check.
      if (i % 1000 === 0) expect(keys.caller(steady.key)).toBe(first);
    }
    expect(keys.remembered).toBeLessThanOrEqual(16_384);
    expect(keys.remembered).toBeGreaterThanOrEqual(8_192);
  });

  it('remembers a key from its second use: a stream of keys used once each passes through without filling the memo', () => {
    const keys = new ApiKeys(randomBytes(32), new Map());
    const steady = keys.issue(newUserId());
    keys.caller(steady.key);
    const first = keys.caller(steady.key);
    for (let i = 0; i < 50_000; i++) {
      const once = keys.issue(newUserId());
      expect(keys.caller(once.key).userId).toBe(once.userId);
      if (i % 1000 === 0) expect(keys.caller(steady.key)).toBe(first);
    }
    // Only the steady key and the filter's false positives (at most an eighth of its bits set).
    expect(keys.remembered).toBeLessThan(50_000 / 8);
  });

  it('answers a key’s first use without remembering it, and remembers it from its second', () => {
    // A fresh memo: its filter has no bit set, so no false positive can admit the key early.
    const keys = new ApiKeys(randomBytes(32), new Map());
    const issued = keys.issue(newUserId());
    const first = keys.caller(issued.key);
    expect(keys.remembered).toBe(0);
    const second = keys.caller(issued.key);
    expect(second).not.toBe(first);
    expect(second).toEqual(first);
    expect(keys.remembered).toBe(1);
    expect(keys.caller(issued.key)).toBe(second);
  });

  it('refuses a key whose MAC does not verify, and does not remember it', () => {
    const keys = new ApiKeys(randomBytes(32), new Map());
    const known = keys.issue(newUserId());
    keys.caller(known.key);
    keys.caller(known.key);
    const issued = keys.issue(newUserId());
    const otherMac = `${issued.mac!.startsWith('A') ? 'B' : 'A'}${issued.mac!.slice(1)}`;
    const forged = issued.key.replace(`_${issued.mac}.`, `_${otherMac}.`);
    expect(forged).not.toBe(issued.key);
    const before = keys.remembered;
    // Twice: a key is remembered from its second sighting, and a refused one never is.
    expect(() => keys.caller(forged)).toThrow(UnauthenticatedError);
    expect(() => keys.caller(forged)).toThrow(UnauthenticatedError);
    expect(keys.remembered).toBe(before);
  });
});

describe('a key presented to an actor that checks its hash', () => {
  it('is parsed without its MAC checked; `verified` checks it, and only an accepted or verified key is remembered', () => {
    const keys = new ApiKeys(randomBytes(32), new Map());
    const issued = keys.issue(newUserId());
    const otherMac = `${issued.mac!.startsWith('A') ? 'B' : 'A'}${issued.mac!.slice(1)}`;
    const forged = keys.presented(issued.key.replace(`_${issued.mac}.`, `_${otherMac}.`));
    expect(forged.unchecked).not.toBeNull();
    expect(forged.caller).toMatchObject({ userId: issued.userId, credential: { kind: 'key', keyId: issued.keyId } });
    // Its hash is not the issued key's: the actor refuses it.
    expect((forged.caller.credential as { hash: string }).hash).not.toBe(issued.hash);
    expect(() => keys.verified(forged)).toThrow(UnauthenticatedError);
    expect(() => keys.verified(forged)).toThrow(UnauthenticatedError);
    expect(keys.remembered).toBe(0);

    // The real key, accepted by its actor twice: remembered from the second time, MAC never computed.
    const first = keys.presented(issued.key);
    expect((first.caller.credential as { hash: string }).hash).toBe(issued.hash);
    keys.accepted(first);
    expect(keys.remembered).toBe(0);
    keys.accepted(keys.presented(issued.key));
    expect(keys.remembered).toBe(1);
    const remembered = keys.presented(issued.key);
    expect(remembered.unchecked).toBeNull();
    expect(keys.verified(remembered)).toBe(remembered.caller);
    expect(keys.caller(issued.key)).toBe(remembered.caller);

    expect(() => keys.presented('tk_not_a_key')).toThrow(UnauthenticatedError);
  });
});
