/**
 * Actor states as a node stores them, read straight from `actor_state`: MessagePack in
 * `body`, or JSON in `state` for a row not written since migration 010. Tests that look
 * under the node (what a crash left, what a flush wrote) read rows through these.
 */
import { decodeState } from '../../src/persistence/actorState.js';
import type { Sql } from '../../src/persistence/database.js';

/** A stored state: whatever the actor wrote (tests reach into its quota limits and usage). */
type StoredState = any;

interface StateColumns {
  entity_key: string;
  epoch: string;
  seq: string;
  body: Uint8Array | null;
  state: unknown;
}

export interface StoredRow {
  entityKey: string;
  epoch: number;
  seq: number;
  state: StoredState;
}

const toRow = (row: StateColumns): StoredRow => ({
  entityKey: row.entity_key,
  epoch: Number(row.epoch),
  seq: Number(row.seq),
  state: decodeState(row.body, row.state),
});

/** The stored row of `entityKey`, or undefined when it has none. */
export async function storedRow(sql: Sql, entityKey: string): Promise<StoredRow | undefined> {
  const [row] = await sql<StateColumns[]>`select entity_key, epoch, seq, body, state from actor_state where entity_key = ${entityKey}`;
  return row === undefined ? undefined : toRow(row);
}

/** Every stored row. */
export async function storedRows(sql: Sql): Promise<StoredRow[]> {
  const rows = await sql<StateColumns[]>`select entity_key, epoch, seq, body, state from actor_state`;
  return rows.map(toRow);
}
