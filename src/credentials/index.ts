/**
 * Secrets and the credentials made from them: scrypt password hashes, the keys derived from
 * `TALLY_KEY_SECRET`, session tokens (JWT) and API keys. Nothing here logs a secret.
 */
export { ApiKeys, type PresentedKey } from './apiKeys.js';
export { hashPassword, needsRehash, verifyNothing, verifyPassword } from './passwords.js';
export { deriveKeys, loadOrCreateSecret } from './secrets.js';
export { SessionTokens } from './sessionTokens.js';
