import { describe, expect, it } from 'vitest';
import { hashApiKey, issueApiKey, parseApiKey } from './ids.js';

describe('parseApiKey', () => {
  it('reads the user id, key id and hash of an issued key', () => {
    const issued = issueApiKey('uabcdefghijklmnopqrst');
    expect(parseApiKey(issued.key)).toEqual({ userId: issued.userId, keyId: issued.keyId, hash: issued.hash });
    expect(issued.hash).toBe(hashApiKey(issued.key));
  });

  it('refuses anything not shaped like a key', () => {
    const key = issueApiKey('uabcdefghijklmnopqrst').key;
    for (const bad of [
      key.slice(0, -1),
      `${key}A`,
      key.replace('tk_', 'tK_'),
      key.replace('_k', '-k'),
      `${key.slice(0, 40)}+${key.slice(41)}`,
      ` ${key}`,
      '',
    ]) {
      expect(parseApiKey(bad)).toBeNull();
    }
  });
});
