/**
 * Bearer credentials (RFC 6750). A token is either an API key (`tk_…`, routed by the user
 * id it carries and checked by the owner against the stored hash) or a session JWT (checked
 * here for signature and expiry, then by the owner for being alive). Admin and service
 * tokens are compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { SessionTokens } from '../node/index.js';
import { looksLikeApiKey, parseApiKey, UnauthenticatedError } from '../shards/index.js';
import type { Caller } from './route.js';

export function bearerToken(authorization: string): string | null {
  if (authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== 'bearer ') return null;
  const token = authorization.slice(7).trim();
  return token.length === 0 ? null : token;
}

export function resolveCaller(token: string, tokens: SessionTokens): Caller | Promise<Caller> {
  if (looksLikeApiKey(token)) {
    const key = parseApiKey(token);
    if (key === null) throw new UnauthenticatedError('malformed API key');
    return { userId: key.userId, credential: { kind: 'key', keyId: key.keyId, hash: key.hash } };
  }
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
