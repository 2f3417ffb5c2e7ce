/**
 * A route is data: method, path, who may call it, the body schema, the answers it gives and
 * a handler. The uWebSockets.js app and the OpenAPI document are both built from the same
 * list, so the document cannot drift from what is served.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import type { Caller } from '../api/index.js';

type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

/**
 * - `none`: anyone; `user`: a session token or API key of a user (the owner then decides
 *   which of the two the operation accepts); `admin` / `service`: the configured tokens.
 */
type AuthMode = 'none' | 'user' | 'admin' | 'service';

export interface RequestContext<B> {
  requestId: string;
  params: Readonly<Record<string, string>>;
  body: B;
  ip: string | null;
  userAgent: string | null;
  idempotencyKey: string | null;
  /** Set on `user` routes. */
  caller: Caller;
  /** On `none` and `admin` routes: the request carried the admin token (checked in constant time). */
  isAdmin: boolean;
  /** On routes that declare `query`: the query string's parameters, each once, decoded. Empty elsewhere. */
  query: Readonly<Record<string, string>>;
}

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Default `application/json`. */
  contentType?: string;
  /** Sent as is instead of serialising `body` (metrics, the OpenAPI document). */
  text?: string;
  /**
   * Sent in pieces instead of `body` or `text`: each `write` resolves once the client can take
   * more, so memory stays flat however long the answer. An error after the first piece cuts
   * the connection (the status is gone by then), so a client never takes a cut answer for a
   * whole one.
   */
  stream?(write: (chunk: string) => Promise<void>): Promise<void>;
}

/** A query string parameter a route reads (for the OpenAPI document; the handler checks the values). */
export interface QueryParameter {
  name: string;
  required?: boolean;
  description: string;
  enum?: readonly string[];
}

/** Response headers the OpenAPI document describes (openapi.ts has what each means). */
export type ResponseHeader =
  | 'RateLimit-Policy'
  | 'RateLimit'
  | 'X-RateLimit-Limit'
  | 'X-RateLimit-Remaining'
  | 'X-RateLimit-Reset'
  | 'Retry-After'
  | 'Tally-Degraded';

/** What a quota answer carries about the tightest limit. */
export const RATE_LIMIT_HEADERS: readonly ResponseHeader[] = [
  'RateLimit-Policy',
  'RateLimit',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
];

export interface ResponseSpec {
  description: string;
  /** The body; without one, an error status answers a problem document. */
  schema?: TSchema;
  headers?: readonly ResponseHeader[];
  /** Default `application/json` (`application/problem+json` for an error without a schema). */
  mediaType?: string;
}

export interface RouteDefinition<S extends TSchema | undefined = TSchema | undefined> {
  method: HttpMethod;
  /** OpenAPI form: `/v1/sessions/{id}`. */
  path: string;
  summary: string;
  tag: string;
  auth: AuthMode;
  /**
   * On `user` routes: an API key may call it (with the scope its operation needs). Without
   * this, only a session token may, and the edge refuses a key with 403.
   */
  apiKeys?: boolean;
  body?: S;
  /**
   * The body's shape for the document, where the handler checks the body itself and `body`
   * lets any JSON through (the service API's operations check each item of a batch on its own).
   */
  documentedBody?: TSchema;
  /** An empty body is accepted and validated as `{}`. */
  bodyOptional?: boolean;
  /** The query string parameters it reads; on other routes the query string is not read. */
  query?: readonly QueryParameter[];
  /**
   * The handler records the client (`context.ip`, `context.userAgent`); on other routes
   * both are null and the headers are not read.
   */
  clientAddress?: boolean;
  /** The handler reads `context.idempotencyKey`; on other routes the header is not read. */
  idempotencyKey?: boolean;
  /**
   * The handler is not started when the client has gone while the request was being
   * authenticated: what it does is wanted only with its answer (a consume the client never
   * hears of must not be charged). Unset where the effect stands on its own: a logout, a
   * settle.
   */
  abandonIfClientGone?: boolean;
  responses: Record<number, ResponseSpec>;
  handle(context: RequestContext<S extends TSchema ? Static<S> : undefined>): Reply | Promise<Reply>;
  /**
   * An optional synchronous attempt, tried first when the caller presented an API key:
   * returns the answer when it can be given without waiting (the user's actor is active on
   * this node), or undefined to go on with `handle`.
   */
  fast?(context: RequestContext<S extends TSchema ? Static<S> : undefined>): Reply | undefined;
}

/** Keeps each route's handler typed by its own body schema inside a heterogeneous list. */
export function route<S extends TSchema | undefined>(definition: RouteDefinition<S>): RouteDefinition {
  return definition as unknown as RouteDefinition;
}

export function pathParams(path: string): string[] {
  return [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]!);
}

/** `/v1/sessions/{id}` → `/v1/sessions/:id`, the uWebSockets.js pattern. */
export function uwsPattern(path: string): string {
  return path.replace(/\{(\w+)\}/g, ':$1');
}
