/**
 * Bearer credentials (RFC 6750). A token is either an API key (`tk_…`, routed by the user
 * id it carries and checked by the owner against the stored hash) or a session JWT (checked
 * here for signature and expiry, then by the owner for being alive). Admin and service
 * tokens are compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { looksLikeApiKey, parseApiKey, UnauthenticatedError } from '../shards/index.js';
import type { Caller } from './route.js';
import type { SessionTokens } from './sessionTokens.js';

export function bearerToken(authorization: string): string | null {
  if (authorization.length < 8) return null;
  // The scheme is case-insensitive (RFC 9110 §11.1); the usual spelling skips lowercasing.
  if (!authorization.startsWith('Bearer ') && authorization.slice(0, 7).toLowerCase() !== 'bearer ') return null;
  const token = authorization.slice(7).trim();
  return token.length === 0 ? null : token;
}

export function resolveCaller(token: string, tokens: SessionTokens): Caller | Promise<Caller> {
  if (looksLikeApiKey(token)) return apiKeyCaller(token);
  return tokens.verify(token).then((claims) => ({
    userId: claims.userId,
    credential: { kind: 'session', sessionId: claims.sessionId },
  }));
}

/**
 * Constant-time equality of a presented token and a configured one. Both are hashed first
 * so that the comparison takes the same time whatever their lengths.
 */
export function tokenMatches(presented: string, configured: string | undefined): boolean {
  if (configured === undefined) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(configured).digest();
  return timingSafeEqual(a, b);
}

/**
 * The caller an API key names: its user, its key id and the SHA-256 of the whole key.
 *
 * Remembered for the keys seen most recently: a client sends the same key with every
 * request, and parsing and hashing it were the costliest steps of checking it. Only
 * key → (user, key id, hash) is kept, in memory and bounded (dropped whole when full);
 * whether the key is live and its hash matches is decided by the owner on every request,
 * in constant time, so a deleted key is refused at once all the same.
 */
export function apiKeyCaller(token: string): Caller {
  let caller = recentKeyCallers.get(token);
  if (caller === undefined) {
    const key = parseApiKey(token);
    if (key === null) throw new UnauthenticatedError('malformed API key');
    caller = Object.freeze({ userId: key.userId, credential: Object.freeze({ kind: 'key' as const, keyId: key.keyId, hash: key.hash }) });
    if (recentKeyCallers.size >= RECENT_KEYS_MAX) recentKeyCallers.clear();
    recentKeyCallers.set(token, caller);
  }
  return caller;
}

const RECENT_KEYS_MAX = 16_384;
const recentKeyCallers = new Map<string, Caller>();
