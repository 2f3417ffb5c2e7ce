/**
 * Password hashing with scrypt (node:crypto). The stored form names its parameters, so they
 * can be raised later without invalidating existing hashes:
 * `scrypt$<N>$<r>$<p>$<salt b64url>$<hash b64url>`. A login with a hash made under other
 * parameters rehashes the password (`needsRehash`).
 *
 * The parameters are one of OWASP's scrypt settings (Password Storage Cheat Sheet):
 * N = 2^14, r = 8, p = 5. Memory is 128·N·r = 16 MiB per hash whatever p is (node runs the
 * p lanes one after another); p multiplies the time instead, about 180 ms on the 2-core
 * development machine. Hashing runs on libuv's thread pool, never on the event loop.
 */
import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

const N = 16384;
const R = 8;
const P = 5;
const KEY_LENGTH = 32;
/** Above what the parameters we accept from a stored hash need (128·N·r·p at most for these). */
const MAX_MEMORY = 64 * 1024 * 1024;

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEY_LENGTH, { ...options, maxmem: MAX_MEMORY }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4]!, 'base64url');
  const expected = Buffer.from(parts[5]!, 'base64url');
  const actual = await derive(password, salt, { N: n, r, p });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** True when `stored` was made under other parameters than `hashPassword` uses now. */
export function needsRehash(stored: string): boolean {
  return !stored.startsWith(`scrypt$${N}$${R}$${P}$`);
}

/** Spends the time of one verification, so an unknown email answers as slowly as a wrong password. */
let decoy: Promise<string> | undefined;
export async function verifyNothing(password: string): Promise<false> {
  decoy ??= hashPassword('decoy password');
  await verifyPassword(password, await decoy);
  return false;
}
