/**
 * The wire shapes of the contract, built from actor state. Both transports (HTTP and the
 * NATS service) answer with these, so a field cannot differ between them.
 */

import { apiKeyPrefix } from './ids.js';
import { LimitTexts } from './limitTexts.js';
import type { LimitState } from './quota/limits.js';
import type { ApiKey, Session, UserActor } from './userActor.js';

/**
 * RFC 3339 rendering, as `Date#toISOString` does it, on the hot path: every answer about
 * limits carries reset times. The text up to the minute is remembered per minute (a handful
 * of minutes are live at any moment: now, this month's end, …); seconds and milliseconds come
 * from tables.
 */
export function iso(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms >= LAST_FOUR_DIGIT_YEAR_MS) return new Date(ms).toISOString();
  const inMinute = ms % 60_000;
  const minute = ms - inMinute;
  let prefix = minutePrefixes.get(minute);
  if (prefix === undefined) {
    prefix = new Date(minute).toISOString().slice(0, 17); // 2026-11-22T15:04:
    if (minutePrefixes.size >= 64) minutePrefixes.clear();
    minutePrefixes.set(minute, prefix);
  }
  return prefix + SECONDS[(inMinute / 1000) | 0]! + MILLIS[inMinute % 1000]!;
}

const LAST_FOUR_DIGIT_YEAR_MS = Date.UTC(10_000, 0, 1);
const minutePrefixes = new Map<number, string>();
const SECONDS = Array.from({ length: 60 }, (_, s) => String(s).padStart(2, '0'));
const MILLIS = Array.from({ length: 1000 }, (_, ms) => `.${String(ms).padStart(3, '0')}Z`);
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

function userView(user: UserActor): UserView {
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

/**
 * `JSON.stringify(limits.map(limitStateView))`, written directly: answers to quota
 * operations are the hot path, and this skips building the views and the generic serialiser.
 */
export function limitsJson(limits: readonly LimitState[]): string {
  let text = '[';
  for (let i = 0; i < limits.length; i++) {
    const state = limits[i]!;
    if (i > 0) text += ',';
    text += `${limitJsonHeads.for(state).text}${jsonNumber(state.remaining)},"reset_at":"${iso(state.reset_at)}"}`;
  }
  return `${text}]`;
}

/** A limit's JSON up to its `remaining`: the same in every answer while the limit is unchanged. */
const limitJsonHeads = new LimitTexts(
  (head: { kind: string; limit: number; text: string }, state) => head.limit === state.limit && head.kind === state.kind,
  (state) => ({
    kind: state.kind,
    limit: state.limit,
    text: `{"name":${JSON.stringify(state.name)},"kind":"${state.kind}","limit":${jsonNumber(state.limit)},"remaining":`,
  }),
);

/** As JSON.stringify writes a number: non-finite values become `null`. */
const jsonNumber = (value: number): string => (Number.isFinite(value) ? String(value) : 'null');
