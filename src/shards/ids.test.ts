import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { apiKeyMacMatches, hashApiKey, issueApiKey, parseApiKey } from './ids.js';

const macKey = randomBytes(32);
const userId = 'uabcdefghijklmnopqrst';

describe('parseApiKey', () => {
  it('reads the user id, key id, MAC and hash of an issued key', () => {
    const issued = issueApiKey(userId, macKey);
    expect(parseApiKey(issued.key)).toEqual({ userId: issued.userId, keyId: issued.keyId, hash: issued.hash, mac: issued.mac });
    expect(issued.hash).toBe(hashApiKey(issued.key));
    expect(issued.key.startsWith(`${issued.prefix}_${issued.mac}.`)).toBe(true);
    expect(issued.mac).toHaveLength(11);
    expect(issued.key).toHaveLength(83); // one more than a key issued before MACs
  });

  it('reads a key issued before keys carried a MAC', () => {
    const legacy = `tk_${userId}_kabcdefghijkl_${randomBytes(32).toString('base64url')}`;
    expect(parseApiKey(legacy)).toEqual({ userId, keyId: 'kabcdefghijkl', hash: hashApiKey(legacy), mac: null });
  });

  it('refuses anything not shaped like a key', () => {
    const key = issueApiKey(userId, macKey).key;
    for (const bad of [
      key.slice(0, -1),
      `${key}A`,
      key.replace('tk_', 'tK_'),
      key.replace('_k', '-k'),
      `${key.slice(0, 40)}+${key.slice(41)}`,
      key.replace('.', '_'),
      ` ${key}`,
      '',
    ]) {
      expect(parseApiKey(bad)).toBeNull();
    }
  });
});

describe('apiKeyMacMatches', () => {
  it('holds for the issuing secret only, and for the routing part the MAC was made for', () => {
    const issued = issueApiKey(userId, macKey);
    const parsed = parseApiKey(issued.key)!;
    expect(apiKeyMacMatches(macKey, parsed)).toBe(true);
    expect(apiKeyMacMatches(randomBytes(32), parsed)).toBe(false);
    // The same MAC and secret moved to another user id: a forgery.
    const moved = parseApiKey(issued.key.replace(userId, 'uzzzzzzzzzzzzzzzzzzzz'))!;
    expect(moved).not.toBeNull();
    expect(apiKeyMacMatches(macKey, moved)).toBe(false);
    expect(apiKeyMacMatches(macKey, { ...parsed, mac: null })).toBe(false);
  });
});
