import type { KvEntry } from '@nats-io/kv';
import { type Logger, pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ClusterMac, REPLAY_WINDOW_MS, readSealedUnverified } from './mac.js';

const entry = (key: string, value: string): KvEntry => ({ key, string: () => value }) as unknown as KvEntry;

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
  return { log, lines };
}

describe('ClusterMac', () => {
  const key = new Uint8Array(32).fill(1);

  it('opens a batch it sealed once, for the subject and reply subject it was sealed for only', () => {
    const mac = new ClusterMac(key, pino({ level: 'silent' }));
    const payload = new Uint8Array([1, 2, 3, 4]);
    const sealed = mac.sealBatch('tally.node.a', '_INBOX.x.1', payload);
    expect(mac.openBatch('tally.node.b', '_INBOX.x.1', sealed)).toBeNull();
    expect(mac.openBatch('tally.node.a', '_INBOX.evil', sealed)).toBeNull();
    expect(mac.openBatch('tally.node.a', '_INBOX.x.1', payload)).toBeNull();
    expect(mac.openBatch('tally.node.a', '_INBOX.x.1', new Uint8Array(0))).toBeNull();
    const tampered = sealed.slice();
    tampered[tampered.length - 1] = tampered.at(-1)! ^ 1;
    expect(mac.openBatch('tally.node.a', '_INBOX.x.1', tampered)).toBeNull();
    expect(new ClusterMac(new Uint8Array(32).fill(2), pino({ level: 'silent' })).openBatch('tally.node.a', '_INBOX.x.1', sealed)).toBeNull();
    expect(mac.openBatch('tally.node.a', '_INBOX.x.1', sealed)).toEqual(payload);
    // The same batch again (recorded and published anew): refused.
    expect(mac.openBatch('tally.node.a', '_INBOX.x.1', sealed)).toBeNull();
    expect(mac.refused.batch).toBe(6);
  });

  it('takes batches in their sender’s order, and none sealed outside the replay window', () => {
    let now = 1_000_000;
    const sender = new ClusterMac(key, pino({ level: 'silent' }), () => now);
    const receiver = new ClusterMac(key, pino({ level: 'silent' }), () => now);
    const first = sender.sealBatch('s', 'r1', new Uint8Array([1]));
    const second = sender.sealBatch('s', 'r2', new Uint8Array([2]));
    expect(receiver.openBatch('s', 'r2', second)).toEqual(new Uint8Array([2]));
    expect(receiver.openBatch('s', 'r1', first)).toBeNull();
    const late = sender.sealBatch('s', 'r3', new Uint8Array([3]));
    now += REPLAY_WINDOW_MS + 1;
    expect(receiver.openBatch('s', 'r3', late)).toBeNull();
    expect(receiver.openBatch('s', 'r4', sender.sealBatch('s', 'r4', new Uint8Array([4])))).toEqual(new Uint8Array([4]));
  });

  it('opens an answer for its reply subject only, and never as a batch', () => {
    const mac = new ClusterMac(key, pino({ level: 'silent' }));
    const answer = mac.sealReply('tally.node.b', new Uint8Array([9]));
    expect(mac.openReply('tally.node.b', answer)).toEqual(new Uint8Array([9]));
    expect(mac.openReply('tally.node.c', answer)).toBeNull();
    expect(mac.openBatch('tally.node.b', '', answer)).toBeNull();
    expect(mac.openReply('tally.node.b', mac.sealBatch('tally.node.b', '', new Uint8Array([9])))).toBeNull();
  });

  it('opens the entries it sealed under their bucket and key only, and refuses the rest, counted', () => {
    const mac = new ClusterMac(key, pino({ level: 'silent' }));
    const value = mac.sealEntry('tally_shards', 'shard.1', { owner: 'a', status: 'owned' });
    expect(value.split('\n')[0]).toBe('{"owner":"a","status":"owned"}');
    expect(mac.openEntry('shards', 'tally_shards', entry('shard.1', value))).toEqual({ owner: 'a', status: 'owned' });
    // Copied under another key or bucket, edited, unsealed, or not JSON: refused.
    expect(mac.openEntry('shards', 'tally_shards', entry('shard.2', value))).toBeNull();
    expect(mac.openEntry('members', 'tally_members', entry('shard.1', value))).toBeNull();
    expect(mac.openEntry('shards', 'tally_shards', entry('shard.1', value.replace('"a"', '"b"')))).toBeNull();
    expect(mac.openEntry('shards', 'tally_shards', entry('shard.1', '{"owner":"a","status":"owned"}'))).toBeNull();
    expect(mac.openEntry('leader', 'tally_coordinator', entry('leader', 'not json'))).toBeNull();
    expect(mac.openEntry('leader', 'tally_coordinator', entry('leader', '\n'))).toBeNull();
    expect(mac.refused).toMatchObject({ shards: 3, members: 1, leader: 2, batch: 0 });
  });

  it('says so at most once a minute per kind', () => {
    const { log, lines } = recordingLog();
    const mac = new ClusterMac(key, log);
    for (let i = 0; i < 5; i++) mac.openEntry('shards', 'tally_shards', entry('shard.1', 'forged'));
    for (let i = 0; i < 5; i++) mac.openBatch('tally.node.a', 'r', new Uint8Array(80));
    expect(lines).toHaveLength(2);
    expect(mac.refused).toMatchObject({ shards: 5, batch: 5 });
  });

  it('lets a reader without the key read what nodes wrote, unverified', () => {
    const mac = new ClusterMac(key, pino({ level: 'silent' }));
    expect(readSealedUnverified(entry('leader', mac.sealEntry('tally_coordinator', 'leader', { node: 'a' })))).toEqual({ node: 'a' });
    expect(readSealedUnverified(entry('leader', '{"node":"b"}'))).toEqual({ node: 'b' });
    expect(readSealedUnverified(entry('leader', 'garbage'))).toBeNull();
  });
});
