/**
 * Registration and login: the flows that start without a user actor. Both are limited per
 * client address by the `anonymous` tier, and failed logins are counted per email and per
 * address, so guessing passwords is slow from one place and for one account.
 */

import type { SessionTokens } from '../http/index.js';
import {
  type LimiterRequest,
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
import { hashPassword, verifyNothing, verifyPassword } from './passwords.js';
import type { Router } from './router.js';

export interface AccountStore {
  insertUser(user: Omit<UserRecord, 'createdAt'>): Promise<UserRecord>;
  findLogin(email: string): Promise<{ id: string; passwordHash: string } | null>;
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

/** Failed logins allowed per window before the email or the address is refused for a while. */
export const LOGIN_FAILURES = {
  perEmail: { limit: 10, windowMs: 15 * 60_000 },
  perAddress: { limit: 100, windowMs: 15 * 60_000 },
} as const;

export class Accounts {
  constructor(
    private readonly store: AccountStore,
    private readonly router: Router,
    private readonly tokens: SessionTokens,
    private readonly tiers: TierRegistry,
    private readonly sessionTtlMs: number,
  ) {}

  /** Charges one request of the `anonymous` tier to the client's address. */
  async admitAnonymous(ip: string | null): Promise<void> {
    if (ip === null || !this.tiers.has('anonymous')) return;
    const decision = await this.router.limiter({ key: `anon:${ip}`, spec: { kind: 'tier', tier: 'anonymous' }, cost: 1 });
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
    const emailKey = `login-email:${login.email.toLowerCase()}`;
    const addressKey = login.ip === null ? null : `login-ip:${login.ip}`;
    await this.refuseIfLockedOut(emailKey, addressKey);

    const found = await this.store.findLogin(login.email);
    const valid = found === null ? await verifyNothing(login.password) : await verifyPassword(login.password, found.passwordHash);
    if (!valid || found === null) {
      await this.countFailure(emailKey, addressKey);
      // The same answer for an unknown email and a wrong password.
      throw new UnauthenticatedError('invalid email or password');
    }

    const expiresAt = now + this.sessionTtlMs;
    const session = await this.router.user({
      userId: found.id,
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
    const token = await this.tokens.sign({ userId: found.id, sessionId: session.id, expiresAt });
    return { token, expires_at: new Date(expiresAt).toISOString(), session };
  }

  private async refuseIfLockedOut(emailKey: string, addressKey: string | null): Promise<void> {
    const checks: LimiterRequest[] = [{ key: emailKey, spec: windowOf(LOGIN_FAILURES.perEmail), cost: 0 }];
    if (addressKey !== null) checks.push({ key: addressKey, spec: windowOf(LOGIN_FAILURES.perAddress), cost: 0 });
    for (const check of checks) {
      const decision = await this.router.limiter(check);
      if (!decision.allowed) {
        throw new TooManyAttemptsError('too many failed logins; try again later', decision.retryAfterMs);
      }
    }
  }

  private async countFailure(emailKey: string, addressKey: string | null): Promise<void> {
    await this.router.limiter({ key: emailKey, spec: windowOf(LOGIN_FAILURES.perEmail), cost: 1 });
    if (addressKey !== null) await this.router.limiter({ key: addressKey, spec: windowOf(LOGIN_FAILURES.perAddress), cost: 1 });
  }
}

function windowOf(limit: { limit: number; windowMs: number }): LimiterRequest['spec'] {
  return { kind: 'window', limit: limit.limit, windowMs: limit.windowMs };
}
