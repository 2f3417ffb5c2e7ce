/**
 * Bearer credentials (RFC 6750). A token is either an API key (`tk_…`, routed by the user id
 * it carries and checked by the owner against the stored hash; its MAC is checked at the
 * edge before a load or a forward, credentials/apiKeys.ts) or a session JWT (checked here for signature and expiry, then by the owner for being
 * alive). Admin and service tokens are compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Caller } from '../api/index.js';
import type { ApiKeys, SessionTokens } from '../credentials/index.js';
import { looksLikeApiKey } from '../shards/index.js';

/** The challenge of every 401 (RFC 6750 §3). */
export const WWW_AUTHENTICATE = 'Bearer realm="tally"';

export function bearerToken(authorization: string): string | null {
  if (authorization.length < 8) return null;
  // The scheme is case-insensitive (RFC 9110 §11.1); the usual spelling skips lowercasing.
  if (!authorization.startsWith('Bearer ') && authorization.slice(0, 7).toLowerCase() !== 'bearer ') return null;
  const token = authorization.slice(7).trim();
  return token.length === 0 ? null : token;
}

/** The two ways of checking a bearer token, for `resolveCaller`. */
export interface Credentials {
  tokens: SessionTokens;
  keys: ApiKeys;
}

export function resolveCaller(token: string, credentials: Credentials): Caller | Promise<Caller> {
  if (looksLikeApiKey(token)) return credentials.keys.caller(token);
  return credentials.tokens.verify(token).then((claims) => ({
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
