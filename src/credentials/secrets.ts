/**
 * The node's secrets when none are configured: generated once and kept in the data
 * directory (mode 0600), so that sessions and API keys survive restarts of a single node. A
 * cluster must set them (the same on every node): `TALLY_JWT_SECRET` signs session tokens,
 * `TALLY_KEY_SECRET` is the root of the API-key MAC key and of the key that hashes emails
 * for the login counters.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const MIN_LENGTH = 32;

/** The secret kept in `<dataDir>/<file>`, created there if missing. */
export async function loadOrCreateSecret(dataDir: string, file: string): Promise<string> {
  const path = join(dataDir, file);
  try {
    const existing = (await readFile(path, 'utf8')).trim();
    if (existing.length >= MIN_LENGTH) return existing;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dataDir, { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  // 'wx': if two processes race, one fails here instead of both writing different secrets.
  try {
    await writeFile(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return (await readFile(path, 'utf8')).trim();
    throw error;
  }
}

/** The keys derived from the key secret (HKDF-SHA256, RFC 5869), one per use. */
export interface KeySecretKeys {
  /** MACs the routing part of API keys. */
  apiKeyMac: Uint8Array;
  /** Hashes emails into the keys of the login-attempt counters. */
  loginEmail: Uint8Array;
  /** MACs what nodes tell each other: forwarded batches and the cluster's KV entries. */
  clusterMac: Uint8Array;
}

export function deriveKeys(keySecret: string): KeySecretKeys {
  const derive = (info: string) => new Uint8Array(hkdfSync('sha256', keySecret, 'tally', info, 32));
  return { apiKeyMac: derive('api-key-mac'), loginEmail: derive('login-email'), clusterMac: derive('cluster-mac') };
}
