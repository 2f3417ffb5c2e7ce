/**
 * Answers remembered per Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): the
 * same key from the same user within 24 h gets the first answer again and is charged
 * nothing more. The fingerprint of the request is kept so that a key reused for a different
 * request is refused instead of silently answered with the wrong result.
 */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
export const MAX_IDEMPOTENCY_ENTRIES = 256;

export interface IdempotencyEntry {
  key: string;
  fingerprint: string;
  createdAt: number;
  answer: unknown;
}

export function findIdempotent(entries: readonly IdempotencyEntry[] | null, now: number, key: string): IdempotencyEntry | undefined {
  if (entries === null) return undefined;
  for (const entry of entries) {
    if (entry.key === key && entry.createdAt + IDEMPOTENCY_TTL_MS > now) return entry;
  }
  return undefined;
}

/** Adds an answer, dropping expired entries and then the oldest beyond `max`. */
export function rememberIdempotent(
  entries: readonly IdempotencyEntry[] | null,
  now: number,
  key: string,
  fingerprint: string,
  answer: unknown,
  max = MAX_IDEMPOTENCY_ENTRIES,
): IdempotencyEntry[] {
  const kept = (entries ?? []).filter((entry) => entry.key !== key && entry.createdAt + IDEMPOTENCY_TTL_MS > now);
  kept.push({ key, fingerprint, createdAt: now, answer });
  return kept.length > max ? kept.slice(kept.length - max) : kept;
}
