import type { KvEntry } from '@nats-io/kv';
import { type Logger, pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ClusterMac, readSealedUnverified } from './mac.js';

const entry = (key: string, value: string): KvEntry => ({ key, string: () => value }) as unknown as KvEntry;

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
  return { log, lines };
}

describe('ClusterMac', () => {
  const key = new Uint8Array(32).fill(1);

  it('opens the batches it sealed, for the subject they were sealed for only', () => {
    const mac = new ClusterMac(key, pino({ level: 'silent' }));
    const payload = new Uint8Array([1, 2, 3, 4]);
    const sealed = mac.sealBatch('tally.node.a', payload);
    expect(sealed.length).toBe(payload.length + 32);
    expect(mac.openBatch('tally.node.a', sealed)).toEqual(payload);
    expect(mac.openBatch('tally.node.b', sealed)).toBeNull();
    expect(mac.openBatch('tally.node.a', payload)).toBeNull();
    expect(mac.openBatch('tally.node.a', new Uint8Array(0))).toBeNull();
    const tampered = sealed.slice();
    tampered[tampered.length - 1] = tampered.at(-1)! ^ 1;
    expect(mac.openBatch('tally.node.a', tampered)).toBeNull();
    expect(new ClusterMac(new Uint8Array(32).fill(2), pino({ level: 'silent' })).openBatch('tally.node.a', sealed)).toBeNull();
    expect(mac.refused.batch).toBe(4);
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
    for (let i = 0; i < 5; i++) mac.openBatch('tally.node.a', new Uint8Array(40));
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
