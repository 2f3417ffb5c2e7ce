/**
 * Registration and login: the flows that start without a user actor. Both are limited per
 * client address by the `anonymous` tier, and login attempts are counted per account and
 * per address, so guessing passwords is slow from one place and for one account.
 *
 * An attempt is counted before its password is checked: it takes a hold on both counters
 * first (refused at the limit), then the check settles the hold — kept as a failure, or
 * released when the password was right. N attempts at the same moment therefore count N,
 * and at most `limit` of them ever reach scrypt. The account's counter is keyed by an HMAC
 * of the email, not the email: the database never holds an attacker's strings as keys.
 */
import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import type { Router } from '../api/index.js';
import type { SessionTokens } from '../credentials/index.js';
import { hashPassword, needsRehash, verifyNothing, verifyPassword } from '../credentials/index.js';
import {
  type LimiterNamespace,
  type LimiterSpec,
  newReservationId,
  newSessionId,
  newUserId,
  type SessionView,
  type TierRegistry,
  TooManyAttemptsError,
  UnauthenticatedError,
  UnknownTierError,
  type UserRecord,
  type UserView,
} from '../shards/index.js';

export interface AccountStore {
  insertUser(user: Omit<UserRecord, 'createdAt'>): Promise<UserRecord>;
  /** By email in any letter case; `email` is the account's own spelling. */
  findLogin(email: string): Promise<{ id: string; email: string; passwordHash: string } | null>;
  /** Replaces the hash only if it is still `previous` (a concurrent change wins). */
  updatePasswordHash(id: string, previous: string, next: string): Promise<void>;
}

export interface Registration {
  email: string;
  password: string;
  name?: string | null;
  tier?: string;
}

export interface Login {
  email: string;
  password: string;
  device?: { name?: string | null; type?: string | null };
  ip: string | null;
  userAgent: string | null;
}

export interface LoginResult {
  token: string;
  expires_at: string;
  session: SessionView;
}

/** Failed logins allowed per window before the account or the address is refused for a while. */
const LOGIN_FAILURES = {
  perEmail: { limit: 10, windowMs: 15 * 60_000 },
  perAddress: { limit: 100, windowMs: 15 * 60_000 },
} as const;

/** How long an attempt's hold lasts if it is never settled (the node stopped mid-check). */
const ATTEMPT_TTL_MS = 120_000;

interface AttemptCounter {
  namespace: LimiterNamespace;
  key: string;
  spec: LimiterSpec;
}

export class Accounts {
  constructor(
    private readonly store: AccountStore,
    private readonly router: Router,
    private readonly tokens: SessionTokens,
    private readonly tiers: TierRegistry,
    private readonly options: { sessionTtlMs: number; emailKey: Uint8Array; log: Logger },
  ) {}

  /** Charges one request of the `anonymous` tier to the client's address. */
  async admitAnonymous(ip: string | null): Promise<void> {
    if (ip === null || !this.tiers.has('anonymous')) return;
    const decision = await this.router.limiter({ op: 'check', namespace: 'anon', key: ip, spec: { kind: 'tier', tier: 'anonymous' }, cost: 1 });
    if (!decision.allowed) {
      throw new TooManyAttemptsError('too many requests from this address; slow down', decision.retryAfterMs);
    }
  }

  async register(registration: Registration): Promise<UserView> {
    const tier = registration.tier ?? 'free';
    if (!this.tiers.has(tier)) throw new UnknownTierError(tier);
    const user = await this.store.insertUser({
      id: newUserId(),
      email: registration.email,
      name: registration.name ?? null,
      tier,
      passwordHash: await hashPassword(registration.password),
      preferences: {},
      blocked: false,
      overrides: [],
    });
    return { id: user.id, email: user.email, name: user.name, tier: user.tier, created_at: user.createdAt.toISOString() };
  }

  async login(login: Login, now: number): Promise<LoginResult> {
    const attempt = newReservationId();
    const counters: AttemptCounter[] = [this.emailCounter(login.email)];
    if (login.ip !== null) counters.push({ namespace: 'login-ip', key: login.ip, spec: windowOf(LOGIN_FAILURES.perAddress) });
    const held = await this.holdAttempt(attempt, counters);
    let failed = false;
    try {
      const found = await this.store.findLogin(login.email);
      // The database matches emails in its own letter case rules, which differ from
      // JavaScript's for a few letters: the account's own spelling keys its counter, so no
      // other spelling of the same email gets a counter of its own.
      const account = found === null ? null : this.emailCounter(found.email);
      if (account !== null && account.key !== counters[0]!.key) held.push(...(await this.holdAttempt(attempt, [account])));
      const valid = found === null ? await verifyNothing(login.password) : await verifyPassword(login.password, found.passwordHash);
      if (!valid || found === null) {
        failed = true;
        // The same answer for an unknown email and a wrong password.
        throw new UnauthenticatedError('invalid email or password');
      }
      if (needsRehash(found.passwordHash)) await this.rehash(found.id, found.passwordHash, login.password);
      return await this.startSession(found.id, login, now);
    } finally {
      await this.settleAttempt(attempt, held, failed ? 1 : 0);
    }
  }

  private async startSession(userId: string, login: Login, now: number): Promise<LoginResult> {
    const expiresAt = now + this.options.sessionTtlMs;
    const session = await this.router.user({
      userId,
      credential: { kind: 'trusted' },
      op: 'sessions.create',
      args: {
        id: newSessionId(),
        deviceName: login.device?.name ?? null,
        deviceType: login.device?.type ?? null,
        ip: login.ip,
        userAgent: login.userAgent,
        expiresAt,
      },
    });
    const token = await this.tokens.sign({ userId, sessionId: session.id, expiresAt });
    return { token, expires_at: new Date(expiresAt).toISOString(), session };
  }

  private emailCounter(email: string): AttemptCounter {
    return { namespace: 'login-email', key: this.emailDigest(email), spec: windowOf(LOGIN_FAILURES.perEmail) };
  }

  /** Holds one attempt on every counter, or refuses with 429 (holding none of them). */
  private async holdAttempt(attempt: string, counters: AttemptCounter[]): Promise<AttemptCounter[]> {
    const held: AttemptCounter[] = [];
    try {
      for (const counter of counters) {
        const decision = await this.router.limiter({ ...counter, op: 'reserve', id: attempt, cost: 1, ttlMs: ATTEMPT_TTL_MS });
        if (!decision.allowed) throw new TooManyAttemptsError('too many failed logins; try again later', decision.retryAfterMs);
        held.push(counter);
      }
      return held;
    } catch (error) {
      await this.settleAttempt(attempt, held, 0);
      throw error;
    }
  }

  /**
   * Keeps the attempt as a failure (1) or releases it (0). A failure whose hold expired
   * meanwhile (the check waited that long) is charged anew. A hold that cannot be settled
   * at all releases itself when it expires, so an error here loses one count at most.
   */
  private async settleAttempt(attempt: string, counters: AttemptCounter[], actual: 0 | 1): Promise<void> {
    for (const counter of counters) {
      try {
        const settled = await this.router.limiter({ ...counter, op: 'settle', id: attempt, actual });
        if (!settled.allowed && actual === 1) await this.router.limiter({ ...counter, op: 'check', cost: 1 });
      } catch (error) {
        this.options.log.warn({ err: error, namespace: counter.namespace }, 'could not settle a login attempt; its hold will expire');
      }
    }
  }

  /** A hash made under older scrypt parameters is replaced once the password has been seen. */
  private async rehash(userId: string, previous: string, password: string): Promise<void> {
    try {
      await this.store.updatePasswordHash(userId, previous, await hashPassword(password));
    } catch (error) {
      this.options.log.warn({ err: error, userId }, 'could not rehash a password; the next login tries again');
    }
  }

  /** The login counter's key for an email: an HMAC, so that no email is stored as a key. */
  private emailDigest(email: string): string {
    return createHmac('sha256', this.options.emailKey).update(email.toLowerCase()).digest('base64url');
  }
}

function windowOf(limit: { limit: number; windowMs: number }): LimiterSpec {
  return { kind: 'window', limit: limit.limit, windowMs: limit.windowMs };
}
