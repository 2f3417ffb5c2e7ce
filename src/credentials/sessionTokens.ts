/**
 * Session tokens: HS256 JWTs (RFC 7519) that carry the user id (`sub`) and the session id
 * (`sid`). The signature proves the token was issued by a node of this cluster; whether the
 * session is still alive is decided by the user's actor on every request, which is how a
 * revoked session is refused from the very next request.
 */
import { errors, jwtVerify, SignJWT } from 'jose';
import { UnauthenticatedError } from '../shards/index.js';

const ISSUER = 'tally';

export interface SessionClaims {
  userId: string;
  sessionId: string;
  expiresAt: number;
}

export class SessionTokens {
  private readonly key: Uint8Array;

  constructor(secret: string) {
    this.key = new TextEncoder().encode(secret);
  }

  sign(claims: SessionClaims): Promise<string> {
    return new SignJWT({ sid: claims.sessionId })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setSubject(claims.userId)
      .setIssuedAt()
      .setExpirationTime(Math.floor(claims.expiresAt / 1000))
      .sign(this.key);
  }

  /** Checks signature, algorithm and expiry; throws UnauthenticatedError with the reason. */
  async verify(token: string): Promise<SessionClaims> {
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], issuer: ISSUER, requiredClaims: ['sub', 'sid', 'exp'] });
      if (typeof payload.sid !== 'string' || typeof payload.sub !== 'string') throw new UnauthenticatedError('malformed session token');
      return { userId: payload.sub, sessionId: payload.sid, expiresAt: payload.exp! * 1000 };
    } catch (error) {
      if (error instanceof UnauthenticatedError) throw error;
      if (error instanceof errors.JWTExpired) throw new UnauthenticatedError('the session token has expired');
      throw new UnauthenticatedError('invalid session token');
    }
  }
}
