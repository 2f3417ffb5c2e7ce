/**
 * Request bodies under uWebSockets.js: chunks arrive through `onData` and each ArrayBuffer
 * is valid only during its callback. A body that arrives in one chunk (nearly all of them)
 * is read in place, inside that callback; the chunks of a longer body are copied as they
 * arrive. Bodies are capped while they stream in, so an oversized body costs at most the cap
 * in memory.
 */

import type { HttpResponse } from 'uWebSockets.js';
import { isUtf8 } from 'node:buffer';
import { checkJsonText, HttpError } from '../api/index.js';

export const MAX_BODY_BYTES = 64 * 1024;
const BACKSLASH = 0x5c;

/**
 * Calls `done` with the whole body, inside the last `onData` callback, so a request whose
 * body arrives with its headers is handled without a detour through the microtask queue.
 * A body that arrives in one chunk (nearly all of them) is passed as a view of uWebSockets.js
 * memory, without a copy: `done` must read it before it returns.
 */
export function collectBody(res: HttpResponse, limit: number, done: (body: Uint8Array) => void, failed: (error: HttpError) => void): void {
  let chunks: Buffer[] | null = null;
  let size = 0;
  let refused = false;
  res.onData((chunk, isLast) => {
    if (refused) return;
    size += chunk.byteLength;
    if (size > limit) {
      refused = true;
      failed(new HttpError('payload_too_large', `request bodies are limited to ${limit} bytes`));
      return;
    }
    if (isLast && chunks === null) {
      done(new Uint8Array(chunk));
      return;
    }
    // Copy: uWebSockets.js reuses the chunk's memory after this callback returns.
    chunks ??= [];
    chunks.push(Buffer.from(new Uint8Array(chunk)));
    if (isLast) done(Buffer.concat(chunks, size));
  });
}

/**
 * Parses a JSON body; an empty body is `undefined`. Invalid UTF-8 is refused, not replaced,
 * and so is text the database could not store (see text.ts).
 */
export function parseJsonBody(bytes: Uint8Array): unknown {
  if (bytes.length === 0) return undefined;
  const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (!isUtf8(body)) throw new HttpError('malformed_json', 'the request body is not valid UTF-8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError('malformed_json', 'the request body is not valid JSON');
  }
  // Valid UTF-8 encodes no surrogate, and JSON.parse refuses a raw U+0000: both can only
  // come from a `\u` escape. Without a backslash there is nothing to look for.
  if (body.includes(BACKSLASH)) checkJsonText(parsed);
  return parsed;
}
