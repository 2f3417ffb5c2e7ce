import { describe, expect, it } from 'vitest';
import type { MapEntry } from './shardMap.js';
import { CLAIMING, claimStands, handOffStands, nextStep, type ShardActivity, STEADY } from './shardState.js';

const ME = 'a';
const owned = (owner: string, revision = 7): MapEntry => ({ entry: { owner, status: 'owned' }, revision });
const moving = (owner: string, to: string, revision = 7): MapEntry => ({ entry: { owner, status: 'moving', to }, revision });
const step = (activity: ShardActivity, serving: boolean, map: MapEntry | undefined, mayClaim = true) => nextStep(ME, mayClaim, { activity, serving, map });

describe('nextStep: what a node does with one shard', () => {
  it('claims a shard the map gives it that it does not serve, but only with a valid lease', () => {
    expect(step(STEADY, false, owned(ME))).toEqual({ kind: 'claim' });
    expect(step(STEADY, false, owned(ME), false)).toEqual({ kind: 'none' });
    // Served already, or a claim in flight: nothing more.
    expect(step(STEADY, true, owned(ME))).toEqual({ kind: 'none' });
    expect(step(CLAIMING, false, owned(ME))).toEqual({ kind: 'none' });
  });

  it('hands off a shard the map moves away, once per map revision', () => {
    expect(step(STEADY, true, moving(ME, 'b'))).toEqual({ kind: 'handOff', to: 'b' });
    // Not served any more (the fence took it) still hands the entry on: the map must move.
    expect(step(STEADY, false, moving(ME, 'b'))).toEqual({ kind: 'handOff', to: 'b' });
    expect(step({ kind: 'handingOff', to: 'b' }, false, moving(ME, 'b'))).toEqual({ kind: 'none' });
    // Handed off, and the watch has not brought the hand-off's own write yet.
    expect(step({ kind: 'handedOff', revision: 7 }, false, moving(ME, 'b', 7))).toEqual({ kind: 'none' });
    // A later move of the same shard from here (it came back, and goes again): a new hand-off.
    expect(step({ kind: 'handedOff', revision: 7 }, false, moving(ME, 'c', 9))).toEqual({ kind: 'handOff', to: 'c' });
  });

  it('drops a shard it serves that the map gives another node, at once', () => {
    expect(step(STEADY, true, owned('b'))).toEqual({ kind: 'drop', owner: 'b' });
    expect(step(STEADY, true, moving('b', 'c'))).toEqual({ kind: 'drop', owner: 'b' });
    expect(step(STEADY, true, undefined)).toEqual({ kind: 'drop', owner: null });
    // Not while its own hand-off is under way: that hand-off releases it.
    expect(step({ kind: 'handingOff', to: 'b' }, true, owned('b'))).toEqual({ kind: 'none' });
    expect(step(STEADY, false, owned('b'))).toEqual({ kind: 'none' });
  });

  it('forgets a finished hand-off once the map has moved past it', () => {
    expect(step({ kind: 'handedOff', revision: 7 }, false, owned('b', 8))).toEqual({ kind: 'forget' });
    // The shard came back to this node: it is claimed (the claim replaces the record).
    expect(step({ kind: 'handedOff', revision: 7 }, false, owned(ME, 12))).toEqual({ kind: 'claim' });
  });

  it('serves a returned claim only if the map still gives it the shard, unmoved', () => {
    expect(claimStands(ME, owned(ME))).toBe(true);
    expect(claimStands(ME, moving(ME, 'b'))).toBe(false);
    expect(claimStands(ME, owned('b'))).toBe(false);
    expect(claimStands(ME, undefined)).toBe(false);
  });

  it('releases a shard for a hand-off only while the map still moves it to the same node', () => {
    expect(handOffStands('b', moving(ME, 'b'))).toBe(true);
    expect(handOffStands('b', moving(ME, 'c'))).toBe(false);
    expect(handOffStands('b', owned(ME))).toBe(false);
    expect(handOffStands('b', undefined)).toBe(false);
  });
});
