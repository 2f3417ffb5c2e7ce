/**
 * What the domain needs from storage, declared here so that `src/shards/` depends on no
 * database: `src/persistence/` implements these shapes, `src/node/` wires them in.
 */

export interface UserRecord {
  id: string;
  email: string;
  name: string | null;
  tier: string;
  passwordHash: string;
  preferences: Record<string, unknown>;
  blocked: boolean;
  overrides: unknown[];
  createdAt: Date;
}

export interface SessionRecord {
  id: string;
  userId: string;
  deviceName: string | null;
  deviceType: string | null;
  ip: string | null;
  userAgent: string | null;
  createdAt: Date;
  expiresAt: Date;
  lastActiveAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  userId: string;
  prefix: string;
  hash: string;
  name: string | null;
  scopes: string[];
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
}

export interface LoadedUser {
  user: UserRecord;
  sessions: SessionRecord[];
  keys: ApiKeyRecord[];
  state: unknown | null;
}

/**
 * Loads read the fence epoch of the entity's shard in the same statement, so the runtime can
 * tell whether another node has taken the shard over (see runtime.ts).
 */
export interface FencedLoad<T> {
  found: T | null;
  fenceEpoch: number | null;
  /** The sequence of the state found (see Actor.restoreVersion); 0 or absent: no state. */
  seq?: number;
  /** The state found is the replica's, newer than what Postgres holds: it is to be written there. */
  unwritten?: boolean;
}

/**
 * The shard and epoch a written-through change is made under (those the owner served the
 * user under when the change began). The store writes the change only while the fence still
 * holds that epoch for the shard, in the same transaction, and refuses it otherwise with
 * `StaleEpochError`: whichever node serves the user next either loaded it after the change
 * committed, or the change was never made.
 */
export interface WriteFence {
  shard: number;
  epoch: number;
}

/** Storage for users. Every written-through change carries its `WriteFence`, last. */
export interface UserStore {
  loadUser(id: string, shard: number): Promise<FencedLoad<LoadedUser>>;
  loadState(entityKey: string, shard: number): Promise<FencedLoad<unknown>>;
  updateProfile(id: string, patch: { name?: string | null; email?: string }, fence: WriteFence): Promise<void>;
  updatePreferences(id: string, preferences: Record<string, unknown>, fence: WriteFence): Promise<void>;
  updateAdmin(id: string, patch: { tier?: string; blocked?: boolean; overrides?: unknown[] }, fence: WriteFence): Promise<void>;
  insertSession(session: SessionRecord, fence: WriteFence): Promise<void>;
  revokeSessions(userId: string, ids: string[], fence: WriteFence): Promise<number>;
  insertApiKey(key: ApiKeyRecord, fence: WriteFence): Promise<void>;
  deleteApiKey(userId: string, id: string, fence: WriteFence): Promise<boolean>;
}
