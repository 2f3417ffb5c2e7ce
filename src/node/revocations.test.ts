import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { UserStore } from '../shards/index.js';
import { announcing, parseRevocation, Revocations } from './revocations.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('parseRevocation', () => {
  it('reads {"user": id}', () => {
    expect(parseRevocation(bytes('{"user":"uabcdefghijklmnopqrst"}'))).toBe('uabcdefghijklmnopqrst');
  });

  it('ignores anything else, never throwing', () => {
    const malformed = [
      '',
      'not json',
      'null',
      '"u1"',
      '["u1"]',
      '{}',
      '{"user":""}',
      '{"user":1}',
      '{"user":null}',
      '{"user":["u1"]}',
      `{"user":"${'u'.repeat(129)}"}`,
      `{"user":"u1","padding":"${'x'.repeat(600)}"}`,
      '{"__proto__":{"user":"u1"}}',
    ];
    for (const text of malformed) expect(parseRevocation(bytes(text)), text).toBeNull();
    expect(parseRevocation(new Uint8Array([0xff, 0xfe, 0x7b]))).toBeNull();
  });
});

describe('Revocations', () => {
  it('forgets the user locally when announcing, with or without a cluster', () => {
    const forgotten: string[] = [];
    const revocations = new Revocations({ forget: (userId) => forgotten.push(userId), forgetAll: () => {} }, pino({ level: 'silent' }));
    revocations.announce('u1');
    expect(forgotten).toEqual(['u1']);
  });
});

describe('announcing', () => {
  /** The shard and epoch a written-through change is made under. */
  const FENCE = { shard: 0, epoch: 1 };

  function fakeStore(fail = false) {
    const calls: string[] = [];
    const write = async (name: string) => {
      calls.push(name);
      if (fail) throw new Error('the database refused (or the fence did)');
    };
    const store: UserStore = {
      loadUser: async () => ({ found: null, fenceEpoch: null }),
      loadState: async () => ({ found: null, fenceEpoch: null }),
      updateProfile: () => write('updateProfile'),
      updatePreferences: () => write('updatePreferences'),
      updateAdmin: () => write('updateAdmin'),
      insertSession: () => write('insertSession'),
      revokeSessions: async () => {
        await write('revokeSessions');
        return 1;
      },
      insertApiKey: () => write('insertApiKey'),
      deleteApiKey: async () => {
        await write('deleteApiKey');
        return true;
      },
    };
    return { store, calls };
  }

  it('announces after a revocation, a key deletion, a block or a tier change has committed', async () => {
    const { store, calls } = fakeStore();
    const announced: string[] = [];
    const wrapped = announcing(store, (userId) => {
      // After the write, never before it.
      expect(calls.length).toBeGreaterThan(0);
      announced.push(userId);
    });
    expect(await wrapped.revokeSessions('u1', ['s1'], FENCE)).toBe(1);
    expect(await wrapped.deleteApiKey('u2', 'k1', FENCE)).toBe(true);
    await wrapped.updateAdmin('u3', { blocked: true }, FENCE);
    await wrapped.updateAdmin('u4', { tier: 'pro' }, FENCE);
    expect(announced).toEqual(['u1', 'u2', 'u3', 'u4']);
  });

  it('announces nothing for other writes, an unblock, or a write that failed', async () => {
    const { store } = fakeStore();
    const announced: string[] = [];
    const wrapped = announcing(store, (userId) => announced.push(userId));
    await wrapped.updateAdmin('u1', { blocked: false }, FENCE);
    await wrapped.updateAdmin('u1', { overrides: [] }, FENCE);
    await wrapped.updateProfile('u1', { name: 'x' }, FENCE);
    await wrapped.updatePreferences('u1', {}, FENCE);
    expect(await wrapped.loadUser('u1', 0)).toEqual({ found: null, fenceEpoch: null });
    expect(announced).toEqual([]);
    const failing = announcing(fakeStore(true).store, (userId) => announced.push(userId));
    await expect(failing.revokeSessions('u1', ['s1'], FENCE)).rejects.toThrow('the database refused (or the fence did)');
    await expect(failing.deleteApiKey('u1', 'k1', FENCE)).rejects.toThrow('the database refused (or the fence did)');
    await expect(failing.updateAdmin('u1', { blocked: true }, FENCE)).rejects.toThrow('the database refused (or the fence did)');
    expect(announced).toEqual([]);
  });
});
