/**
 * What nodes send each other when a request is forwarded to its owner: MessagePack batches
 * on `tally.node.<id>`. A batch is only transport. The owner decides each item on its own,
 * and answers each with its result, its error (code and detail, so the sender raises the
 * same domain error it would have raised had it owned the entity), or `moved` (the owner
 * does not serve the item's shard now: the sender refreshes its map and tries again).
 */
import { Packr } from 'msgpackr';
import { type ErrorCode, InvalidRequestError, type LimiterRequest, OwnerUnavailableError, TallyError, type UserRequest } from '../../shards/index.js';

export type ForwardItem = { kind: 'user'; request: UserRequest } | { kind: 'limiter'; request: LimiterRequest };

export interface WireError {
  code: ErrorCode;
  detail: string;
  retryAfterMs?: number;
  errors?: readonly string[];
}

/** `strict`: the user's tier does not fail open, so the sender need not record the credential (failOpen.ts). */
export type ForwardResult = { ok: unknown; strict?: boolean } | { err: WireError } | { moved: true; unheard?: true };

export interface ForwardBatch {
  v: number;
  items: ForwardItem[];
}

export interface ForwardReply {
  results: ForwardResult[];
}

// Plain maps and arrays, no records: both ends may run different builds during a rolling restart.
const packr = new Packr({ useRecords: false, moreTypes: false });

export function encode(value: ForwardBatch | ForwardReply): Uint8Array {
  return packr.pack(value);
}

export function decode<T extends ForwardBatch | ForwardReply>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}

/** The answer to a forwarded item of an unknown shape. */
export const MALFORMED_ITEM: ForwardResult = Object.freeze({
  err: Object.freeze({ code: 'invalid_request' as const, detail: 'a forwarded item of an unknown shape' }),
});

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A forwarded item as it arrived, checked for the shape the owner's services read (whoever
 * sent it, a batch is read as a stranger's): the item, or null (answered MALFORMED_ITEM).
 */
export function readForwardItem(raw: unknown): ForwardItem | null {
  if (!isRecord(raw) || !isRecord(raw.request)) return null;
  const request = raw.request;
  if (raw.kind === 'user') {
    const { userId, credential, op, args } = request;
    if (typeof userId === 'string' && isRecord(credential) && typeof credential.kind === 'string' && typeof op === 'string' && isRecord(args)) {
      return raw as ForwardItem;
    }
  } else if (raw.kind === 'limiter') {
    const { namespace, key, op } = request;
    if (typeof namespace === 'string' && typeof key === 'string' && typeof op === 'string') return raw as ForwardItem;
  }
  return null;
}

/** A thrown value as the owner sends it back. Errors that are not the domain's become `internal`, revealing nothing. */
export function toWireError(error: unknown): WireError {
  if (error instanceof TallyError) {
    const wire: WireError = { code: error.code, detail: error.detail };
    if (error.retryAfterMs !== undefined) wire.retryAfterMs = error.retryAfterMs;
    if (error instanceof InvalidRequestError && error.errors !== undefined) wire.errors = error.errors;
    return wire;
  }
  return { code: 'internal', detail: 'the owner failed to answer this request' };
}

/** The domain error the sender raises for an owner's answer. */
export function fromWireError(wire: WireError): TallyError {
  switch (wire.code) {
    case 'owner_unavailable':
      return new OwnerUnavailableError(wire.detail, wire.retryAfterMs);
    case 'invalid_request':
      return new InvalidRequestError(wire.detail, wire.errors);
    default:
      return new TallyError(wire.code, wire.detail, wire.retryAfterMs === undefined ? undefined : { retryAfterMs: wire.retryAfterMs });
  }
}
