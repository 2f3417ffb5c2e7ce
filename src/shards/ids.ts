/**
 * Identifiers and API key format.
 *
 * Ids are a type letter and 20 base32 characters (100 random bits). An API key is
 * `tk_<userId>_<keyId>_<secret>`: the user id routes it to its owner without a database
 * lookup, the key id finds its record in the owner's memory, and only then is the secret's
 * hash compared, in constant time. Keys are stored as SHA-256 hashes: the secret carries 256
 * random bits, so a fast hash is enough (a password needs scrypt because it has few bits).
 */
import { hash, randomBytes } from 'node:crypto';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

function randomBase32(length: number): string {
  const bytes = randomBytes(length);
  for (let i = 0; i < length; i++) bytes[i] = BASE32.charCodeAt(bytes[i]! & 31);
  // One flat string (concatenating characters would build a chain of cons strings).
  return bytes.toString('latin1');
}

export const newUserId = (): string => `u${randomBase32(20)}`;
export const newSessionId = (): string => `s${randomBase32(20)}`;
export const newKeyId = (): string => `k${randomBase32(12)}`;
export const newReservationId = (): string => `r${randomBase32(20)}`;

const USER_ID = /^u[a-z2-7]{20}$/;

/** `tk_` + user id (21) + `_` + key id (13) + `_` + secret (43: 32 bytes in base64url). */
const KEY_LENGTH = 3 + 21 + 1 + 13 + 1 + 43;
const USER_AT = 3;
const KEY_ID_AT = USER_AT + 21 + 1;
const SECRET_AT = KEY_ID_AT + 13 + 1;

export function isUserId(value: string): boolean {
  return USER_ID.test(value);
}

export interface ParsedApiKey {
  userId: string;
  keyId: string;
  hash: string;
}

export interface IssuedApiKey extends ParsedApiKey {
  key: string;
  prefix: string;
}

/** The public part of a key, shown in listings: derived, so actors need not keep it. */
export function apiKeyPrefix(userId: string, keyId: string): string {
  return `tk_${userId}_${keyId}`;
}

export function issueApiKey(userId: string): IssuedApiKey {
  const keyId = newKeyId();
  const prefix = apiKeyPrefix(userId, keyId);
  const key = `${prefix}_${randomBytes(32).toString('base64url')}`;
  return { key, prefix, userId, keyId, hash: hashApiKey(key) };
}

/**
 * Null when the string is not shaped like one of our keys (no lookup is made for it). A
 * character loop rather than a regular expression: this runs on every request with a key.
 */
export function parseApiKey(key: string): ParsedApiKey | null {
  if (key.length !== KEY_LENGTH || !key.startsWith('tk_') || key.charCodeAt(KEY_ID_AT - 1) !== UNDERSCORE || key.charCodeAt(SECRET_AT - 1) !== UNDERSCORE) return null;
  if (key.charCodeAt(USER_AT) !== 0x75 /* u */ || !allBase32(key, USER_AT + 1, KEY_ID_AT - 1)) return null;
  if (key.charCodeAt(KEY_ID_AT) !== 0x6b /* k */ || !allBase32(key, KEY_ID_AT + 1, SECRET_AT - 1)) return null;
  if (!allBase64Url(key, SECRET_AT, KEY_LENGTH)) return null;
  return { userId: key.slice(USER_AT, KEY_ID_AT - 1), keyId: key.slice(KEY_ID_AT, SECRET_AT - 1), hash: hashApiKey(key) };
}

const UNDERSCORE = 0x5f;

function allBase32(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x32 && c <= 0x37))) return false;
  }
  return true;
}

function allBase64Url(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === UNDERSCORE)) return false;
  }
  return true;
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
