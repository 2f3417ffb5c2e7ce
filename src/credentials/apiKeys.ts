/**
 * API keys at the edge: issuing them with a MAC, and turning a presented key into the caller
 * it names without touching the database.
 *
 * Before a load or a forward, a key whose MAC does not verify, or an old key without a MAC
 * that the database does not list as such (its key id, for its user), is refused here with
 * the same 401 as any bad key. A well-shaped key made up by a prober, whatever user id it
 * names, costs an HMAC and nothing else: no load, and in a cluster no forward.
 *
 * The MAC guards what comes after a miss, so a request its user's actor answers here and now
 * need not pay for it (`presented`): the actor compares the key's hash with the one it
 * stores, and only the key issued, MAC and all, has that hash. At 300,000 users cycling,
 * where few keys stay in the memo, the HMAC was 4–5 µs of the 35–40 µs a consume cost the
 * node. A made-up key naming a user in memory then costs a hash comparison instead of an
 * HMAC, and counts as a use of the actor for its eviction order; making one needs the user's
 * id, 100 random bits shown only to the user and to operators.
 */
import type { ApiKeyCallers, Caller, PresentedApiKey } from '../api/index.js';
import {
  apiKeyMacMatches,
  type Credential,
  INVALID_API_KEY,
  type IssuedApiKey,
  issueApiKey,
  type ParsedApiKey,
  parseApiKey,
  UnauthenticatedError,
} from '../shards/index.js';

/**
 * A key as presented, for a request that may be answered by an actor here (`ApiKeys.presented`):
 * its caller, and the parsed key while its MAC is unchecked (null: it was remembered, so checked).
 */
export interface PresentedKey extends PresentedApiKey {
  readonly token: string;
  readonly caller: Caller;
  readonly unchecked: ParsedApiKey | null;
}

/** Keys remembered at most: two generations of half as many each. */
const RECENT_KEYS_MAX = 16_384;
/** Bits of the first-sighting filter, and how many sightings it takes before it is cleared (an eighth of them set at most). */
const SIGHTING_BITS = 1 << 17;
const SIGHTINGS_PER_ROUND = SIGHTING_BITS / 8;

export class ApiKeys implements ApiKeyCallers {
  /**
   * Parse, MAC check and SHA-256 of the keys seen most recently: a client sends the same key
   * with every request, and those were the costliest steps of checking it. Only key →
   * (user, key id, hash) is kept, in memory; whether the key is live and its hash matches is
   * decided by the owner on every request, in constant time, so a deleted key is refused at
   * once all the same.
   *
   * Bounded as two generations (an approximate LRU with no per-hit bookkeeping): keys go into
   * `recent`; when it is full it becomes `older` and the previous `older` is dropped. A key
   * found in `older` moves back into `recent`, so a key in steady use is never forgotten, and
   * at most RECENT_KEYS_MAX are held, about 360 bytes each with the key, whatever the number of users.
   *
   * A key is remembered from its second sighting on (`seenBefore`): a node serving more keys
   * than it remembers, each used now and then (300,000 users cycling), would otherwise put
   * every key into the memo and drop it again before its next use, each entry outliving two
   * young-generation collections and promoted to the old generation first.
   */
  private recent = new Map<string, Caller>();
  private older = new Map<string, Caller>();
  /** Keys sighted since `sightings` was last reset, as bits hashed from their key ids (false positives admit a key early). */
  private readonly sighted = new Uint32Array(SIGHTING_BITS / 32);
  private sightings = 0;

  /**
   * @param macKey the key secret's MAC key, the same on every node
   * @param unsignedKeys live keys issued before keys carried a MAC, key id → user id (a fixed
   *   set: no new key is issued without one)
   */
  constructor(
    private readonly macKey: Uint8Array,
    private readonly unsignedKeys: ReadonlyMap<string, string>,
  ) {}

  issue(userId: string): IssuedApiKey {
    return issueApiKey(userId, this.macKey);
  }

  /** The caller a presented key names; throws the one 401 for every kind of bad key. */
  caller(token: string): Caller {
    return this.verified(this.presented(token));
  }

  /**
   * The caller a key names, its MAC not yet checked unless the key was remembered: for a
   * request that an actor active here may answer at once, and that authenticates the key
   * itself by its hash. Then `accepted` if the actor answered; otherwise `verified` before
   * anything else is done for it. Throws the one 401 for a key not shaped like ours.
   */
  presented(token: string): PresentedKey {
    const recent = this.recent.get(token);
    if (recent !== undefined) return { token, caller: recent, unchecked: null };
    const older = this.older.get(token);
    if (older !== undefined) {
      this.remember(token, older);
      return { token, caller: older, unchecked: null };
    }
    const key = parseApiKey(token);
    if (key === null) throw new UnauthenticatedError(INVALID_API_KEY);
    const credential: Credential = Object.freeze({ kind: 'key' as const, keyId: key.keyId, hash: key.hash });
    return { token, caller: Object.freeze({ userId: key.userId, credential }), unchecked: key };
  }

  /** The presented key's caller once its MAC holds (or, for a key older than MACs, once it is listed); throws the one 401. */
  verified(presented: PresentedKey): Caller {
    const key = presented.unchecked;
    if (key === null) return presented.caller;
    if (!apiKeyMacMatches(this.macKey, key) && (key.mac !== null || this.unsignedKeys.get(key.keyId) !== key.userId)) {
      throw new UnauthenticatedError(INVALID_API_KEY);
    }
    this.accepted(presented);
    return presented.caller;
  }

  /** An actor accepted the presented key (its hash is the stored one): remembered from its second sighting. */
  accepted(presented: PresentedKey): void {
    if (presented.unchecked !== null && this.seenBefore(presented.unchecked.keyId)) this.remember(presented.token, presented.caller);
  }

  /** Whether a key with this id was sighted since the filter was last cleared; records this sighting. */
  private seenBefore(keyId: string): boolean {
    if (++this.sightings > SIGHTINGS_PER_ROUND) {
      this.sighted.fill(0);
      this.sightings = 1;
    }
    // FNV-1a over the key id (random base32): spread enough for a filter.
    let hash = 0x811c9dc5;
    for (let i = 0; i < keyId.length; i++) hash = Math.imul(hash ^ keyId.charCodeAt(i), 0x01000193);
    const bit = (hash >>> 0) % SIGHTING_BITS;
    const word = bit >>> 5;
    const mask = 1 << (bit & 31);
    const seen = (this.sighted[word]! & mask) !== 0;
    this.sighted[word] = this.sighted[word]! | mask;
    return seen;
  }

  /** How many keys are remembered (for tests and the heap figure). */
  get remembered(): number {
    return this.recent.size + this.older.size;
  }

  private remember(token: string, caller: Caller): void {
    if (this.recent.size >= RECENT_KEYS_MAX / 2) {
      this.older = this.recent;
      this.recent = new Map();
    }
    this.recent.set(token, caller);
  }
}
