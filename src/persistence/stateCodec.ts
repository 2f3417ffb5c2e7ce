/**
 * Actor states as MessagePack: how Postgres (`actor_state.body`) and the replica cache both
 * store them. Plain maps and arrays (no msgpackr records or extensions), so any MessagePack
 * reader can read one; a 64-bit integer reads back as a number, as a BigInt the actor held
 * would have been written by JSON.
 */
import { Packr } from 'msgpackr';

export const statePackr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number' });
