/**
 * The wire shapes of the contract, built from actor state. Both transports (HTTP and the
 * NATS service) answer with these, so a field cannot differ between them.
 */
import type { LimitState } from './quota/limits.js';
import { apiKeyPrefix } from './ids.js';
import type { ApiKey, Session, UserActor } from './userActor.js';

/**
 * RFC 3339 rendering, remembering the last few values: a budget's reset time is the same
 * for every answer of a month, and formatting a Date is one of the costlier steps of an
 * answer on the hot path.
 */
const recentIso = new Map<number, string>();
function iso(ms: number): string {
  let text = recentIso.get(ms);
  if (text === undefined) {
    text = new Date(ms).toISOString();
    if (recentIso.size >= 64) recentIso.delete(recentIso.keys().next().value!);
    recentIso.set(ms, text);
  }
  return text;
}
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

export interface UserView {
  id: string;
  email: string;
  name: string | null;
  tier: string;
  created_at: string;
}

export interface ProfileView extends UserView {
  preferences: Record<string, unknown>;
}

export interface SessionView {
  id: string;
  device: { name: string | null; type: string | null };
  ip: string | null;
  user_agent: string | null;
  created_at: string;
  last_active_at: string;
  expires_at: string;
}

export interface KeyView {
  id: string;
  prefix: string;
  name: string | null;
  scopes: readonly string[];
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
}

export interface LimitStateView {
  name: string;
  kind: LimitState['kind'];
  limit: number;
  remaining: number;
  reset_at: string;
}

export function userView(user: UserActor): UserView {
  return { id: user.key, email: user.email, name: user.name, tier: user.tier, created_at: iso(user.createdAt) };
}

export function profileView(user: UserActor): ProfileView {
  return { ...userView(user), preferences: JSON.parse(user.preferencesJson) as Record<string, unknown> };
}

export function sessionView(session: Session): SessionView {
  return {
    id: session.id,
    device: { name: session.deviceName, type: session.deviceType },
    ip: session.ip,
    user_agent: session.userAgent,
    created_at: iso(session.createdAt),
    last_active_at: iso(session.lastActiveAt),
    expires_at: iso(session.expiresAt),
  };
}

export function keyView(userId: string, key: ApiKey): KeyView {
  return {
    id: key.id,
    prefix: apiKeyPrefix(userId, key.id),
    name: key.name,
    scopes: key.scopes,
    created_at: iso(key.createdAt),
    expires_at: isoOrNull(key.expiresAt),
    last_used_at: isoOrNull(key.lastUsedAt),
  };
}

export function limitStateView(state: LimitState): LimitStateView {
  return { name: state.name, kind: state.kind, limit: state.limit, remaining: state.remaining, reset_at: iso(state.reset_at) };
}
