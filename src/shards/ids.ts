/**
 * Identifiers and API key format.
 *
 * Ids are a type letter and 20 base32 characters (100 random bits). An API key is
 * `tk_<userId>_<keyId>_<mac>.<secret>`: the user id routes it to its owner without a database
 * lookup, the key id finds its record in the owner's memory, and only then is the secret's
 * hash compared, in constant time. Keys are stored as SHA-256 hashes: the secret carries 192
 * random bits, so a fast hash is enough (a password needs scrypt because it has few bits).
 *
 * The MAC is an HMAC-SHA256 of `<userId>_<keyId>` under the cluster's key secret, cut to 64
 * bits. Any node checks it without a lookup, so a key with a made-up user id is refused at
 * the edge instead of costing a database load (or, in a cluster, a forward): a prober's odds
 * are 2^-64 a try. Keys issued before the MAC existed (`tk_<userId>_<keyId>_<secret>`, with
 * 256 random bits) still parse; the edge accepts them only for the key ids the database lists
 * as such.
 *
 * Why these sizes: a key is hashed and copied on every request it comes with, and each
 * character costs (the MAC with the old 43-character secret made a consume ~5 % slower,
 * bench/suites/pipeline). An 11-character MAC and a 32-character secret keep a new key within one
 * character of the old ones.
 */
import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

function randomBase32(length: number): string {
  const bytes = randomBytes(length);
  for (let i = 0; i < length; i++) bytes[i] = BASE32.charCodeAt(bytes[i]! & 31);
  // One flat string (concatenating characters would build a chain of cons strings).
  return bytes.toString('latin1');
}

export const newUserId = (): string => `u${randomBase32(20)}`;
export const newSessionId = (): string => `s${randomBase32(20)}`;
const newKeyId = (): string => `k${randomBase32(12)}`;
export const newReservationId = (): string => `r${randomBase32(20)}`;

/**
 * After the key id: an 11-character MAC, ".", a 32-character secret; or, before MACs, a
 * 43-character secret. The "." (never in base64url) keeps the two from ever being confused.
 */
const KEY = /^tk_(u[a-z2-7]{20})_(k[a-z2-7]{12})_(?:([A-Za-z0-9_-]{11})\.[A-Za-z0-9_-]{32}|[A-Za-z0-9_-]{43})$/;
const MAC_BYTES = 8;
const SECRET_BYTES = 24;

export interface ParsedApiKey {
  userId: string;
  keyId: string;
  hash: string;
  /** The MAC the key carries; null for a key issued before keys carried one. */
  mac: string | null;
}

export interface IssuedApiKey extends ParsedApiKey {
  key: string;
  prefix: string;
}

/** The public part of a key, shown in listings: derived, so actors need not keep it. */
export function apiKeyPrefix(userId: string, keyId: string): string {
  return `tk_${userId}_${keyId}`;
}

export function issueApiKey(userId: string, macKey: Uint8Array): IssuedApiKey {
  const keyId = newKeyId();
  const prefix = apiKeyPrefix(userId, keyId);
  const mac = apiKeyMac(macKey, userId, keyId);
  const key = `${prefix}_${mac}.${randomBytes(SECRET_BYTES).toString('base64url')}`;
  return { key, prefix, userId, keyId, hash: hashApiKey(key), mac };
}

/** The MAC of a key's routing part, as the key spells it. */
function apiKeyMac(macKey: Uint8Array, userId: string, keyId: string): string {
  return createHmac('sha256', macKey).update(`${userId}_${keyId}`).digest().subarray(0, MAC_BYTES).toString('base64url');
}

/** Whether `mac` is the MAC of the key's routing part, compared in constant time. */
export function apiKeyMacMatches(macKey: Uint8Array, key: ParsedApiKey): boolean {
  if (key.mac === null) return false;
  const expected = Buffer.from(apiKeyMac(macKey, key.userId, key.keyId));
  const presented = Buffer.from(key.mac);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/** Null when the string is not shaped like one of our keys (no lookup is made for it). */
export function parseApiKey(key: string): ParsedApiKey | null {
  const match = KEY.exec(key);
  if (match === null) return null;
  return { userId: match[1]!, keyId: match[2]!, hash: hashApiKey(key), mac: match[3] ?? null };
}

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith('tk_');
}

export function hashApiKey(key: string): string {
  return hash('sha256', key, 'base64url');
}

/**
 * Constant-time comparison of two base64url SHA-256 hashes: every character is compared,
 * whatever differs first (the lengths are fixed by the format, so checking them leaks nothing).
 */
export function sameHash(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}
