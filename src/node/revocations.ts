/**
 * Announcements that a user's credentials changed: when the owner commits a session
 * revocation (one session, every session, or one logged out to make room), an API key
 * deletion, a block or a tier change, every node forgets what it had seen verified for that
 * user (failOpen.ts), so that fail-open never admits a credential its owner has since
 * refused. On a single node the forgetting is local; in a cluster the owner also publishes
 * `{"user": <id>}` on `tally.cluster.revoked` and every node forgets the user on hearing it.
 *
 * The announcement carries no MAC: a forged one can only make fail-open stricter. It is read
 * as a stranger's all the same: anything but that one small shape is ignored (logged at most
 * once a minute). After NATS reconnects, announcements may have been missed: every node
 * forgets everything it had seen verified.
 *
 * The owner learns of the changes by its store: `announcing` wraps the store the user
 * service writes through, and announces after each such write has committed.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { UserStore } from '../shards/index.js';
import { REVOKED_SUBJECT } from './cluster/index.js';

/** What the announcements act on: the fail-open credentials of this node. */
export interface Forgetting {
  forget(userId: string): void;
  forgetAll(): void;
}

/** An announcement longer than this is not one. */
const MAX_ANNOUNCEMENT_BYTES = 512;
const MAX_USER_ID_LENGTH = 128;
const WARN_EVERY_MS = 60_000;

export class Revocations {
  private publish: ((userId: string) => void) | null = null;
  private lastWarned = Number.NEGATIVE_INFINITY;
  /** Announcements heard that were not one (for tests and metrics). */
  ignored = 0;

  constructor(
    private readonly failOpen: Forgetting,
    private readonly log: Logger,
  ) {}

  /** The owner committed a change that ends credentials of `userId`: forgotten here, and announced to the other nodes. */
  readonly announce = (userId: string): void => {
    this.failOpen.forget(userId);
    const publish = this.publish;
    if (publish === null) return;
    try {
      publish(userId);
    } catch (error) {
      // The connection is closing: the others lose the announcement, not this node its write.
      this.log.warn({ err: error }, 'a revocation could not be announced to the other nodes; their fail-open answers may admit it for up to a minute');
    }
  };

  /** In a cluster: hears the other nodes' announcements and publishes this node's. */
  listen(nc: NatsConnection): void {
    nc.subscribe(REVOKED_SUBJECT, { callback: (error, msg) => this.heard(error, msg) });
    this.publish = (userId) => nc.publish(REVOKED_SUBJECT, JSON.stringify({ user: userId }));
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'reconnect') this.failOpen.forgetAll();
    })().catch(() => undefined);
  }

  private heard(error: Error | null, msg: Msg): void {
    if (error !== null) return;
    const userId = parseRevocation(msg.data);
    if (userId !== null) {
      this.failOpen.forget(userId);
      return;
    }
    this.ignored++;
    const now = Date.now();
    if (now - this.lastWarned < WARN_EVERY_MS) return;
    this.lastWarned = now;
    this.log.warn({ subject: REVOKED_SUBJECT, ignored: this.ignored }, 'ignored a malformed revocation announcement (is another client publishing on it?)');
  }
}

/** The user an announcement names, or null when it is not `{"user": <id>}`. */
export function parseRevocation(data: Uint8Array): string | null {
  if (!(data instanceof Uint8Array) || data.length === 0 || data.length > MAX_ANNOUNCEMENT_BYTES) return null;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const user = Object.hasOwn(value, 'user') ? (value as { user: unknown }).user : undefined;
  if (typeof user !== 'string' || user.length === 0 || user.length > MAX_USER_ID_LENGTH) return null;
  return user;
}

/**
 * `store`, announcing each committed change that ends credentials: revoked sessions, a
 * deleted key, and an admin update that blocks the user or changes their tier. A write that
 * fails announces nothing (nothing changed).
 */
export function announcing(store: UserStore, announce: (userId: string) => void): UserStore {
  return {
    loadUser: (...args) => store.loadUser(...args),
    loadState: (...args) => store.loadState(...args),
    updateProfile: (...args) => store.updateProfile(...args),
    updatePreferences: (...args) => store.updatePreferences(...args),
    insertSession: (...args) => store.insertSession(...args),
    insertApiKey: (...args) => store.insertApiKey(...args),
    async updateAdmin(...args) {
      await store.updateAdmin(...args);
      const [userId, patch] = args;
      if (patch.blocked === true || patch.tier !== undefined) announce(userId);
    },
    async revokeSessions(...args) {
      const revoked = await store.revokeSessions(...args);
      announce(args[0]);
      return revoked;
    },
    async deleteApiKey(...args) {
      const deleted = await store.deleteApiKey(...args);
      announce(args[0]);
      return deleted;
    },
  };
}
