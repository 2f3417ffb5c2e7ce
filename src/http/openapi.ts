/**
 * The OpenAPI 3.1 document, generated from the route list. OpenAPI 3.1 schemas are JSON
 * Schema 2020-12, which TypeBox schemas already are; only TypeBox's own symbol-keyed
 * annotations are dropped (JSON.stringify skips symbol keys).
 *
 * Each operation lists the answers the server gives: the route's own, and those that every
 * route of its kind can give — 401 and 403 where credentials are checked, 400, 413 and 415
 * where a body is read, 503 where an actor or the database is reached. The tests check every
 * answer they receive against this document.
 */
import type { TSchema } from '@sinclair/typebox';
import { schemas } from '../api/index.js';
import { pathParams, RATE_LIMIT_HEADERS, type ResponseHeader, type ResponseSpec, type RouteDefinition } from './route.js';

const HEADERS: Record<ResponseHeader | 'WWW-Authenticate', { description: string; schema: Record<string, unknown> }> = {
  'RateLimit-Policy': {
    description: 'the tightest limit’s policy (IETF RateLimit fields draft): `"name";q=<limit>;w=<window seconds>`',
    schema: { type: 'string' },
  },
  RateLimit: { description: 'the tightest limit now: `"name";r=<remaining>;t=<seconds until reset>`', schema: { type: 'string' } },
  'X-RateLimit-Limit': { description: 'the tightest limit, as older clients read it', schema: { type: 'string' } },
  'X-RateLimit-Remaining': { description: 'what the tightest limit has left', schema: { type: 'string' } },
  'X-RateLimit-Reset': { description: 'when the tightest limit is whole again, in epoch seconds', schema: { type: 'string' } },
  'Retry-After': { description: 'seconds after which the same request may succeed', schema: { type: 'string' } },
  'Tally-Degraded': { description: '`1`: allowed without the user’s owner (a `fail_open` tier); no limits are known', schema: { type: 'string' } },
  'WWW-Authenticate': { description: '`Bearer realm="tally"`', schema: { type: 'string' } },
};

/** Who may call an operation, as the server checks it. */
function security(route: RouteDefinition): Record<string, string[]>[] | undefined {
  switch (route.auth) {
    case 'none':
      return undefined;
    case 'user':
      return route.apiKeys === true ? [{ sessionToken: [] }, { apiKey: [] }] : [{ sessionToken: [] }];
    case 'admin':
      return [{ adminToken: [] }];
    case 'service':
      return [{ serviceToken: [] }];
  }
}

export function openApiDocument(routes: readonly RouteDefinition[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const operation: Record<string, unknown> = {
      operationId: `${route.method}${route.path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
      summary: route.summary,
      tags: [route.tag],
      responses: responses(route),
    };
    const required = security(route);
    if (required !== undefined) operation.security = required;
    const params = pathParams(route.path).map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
    if (route.idempotencyKey === true) {
      params.push({ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', maxLength: 255 } } as (typeof params)[number]);
    }
    for (const parameter of route.query ?? []) {
      params.push({
        name: parameter.name,
        in: 'query',
        required: parameter.required === true,
        description: parameter.description,
        schema: parameter.enum === undefined ? { type: 'string' } : { type: 'string', enum: [...parameter.enum] },
      } as (typeof params)[number]);
    }
    if (params.length > 0) operation.parameters = params;
    if (route.body !== undefined) {
      operation.requestBody = { required: route.bodyOptional !== true, content: { 'application/json': { schema: plain(route.documentedBody ?? route.body) } } };
    }
    paths[route.path] ??= {};
    paths[route.path]![route.method] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Tally',
      version,
      description:
        'User profiles, sessions, API keys and real-time quotas. Errors are RFC 9457 problem details (application/problem+json). Every answer carries `x-request-id`.',
    },
    servers: [{ url: '/', description: 'the node or load balancer that served this document' }],
    paths,
    components: {
      securitySchemes: {
        sessionToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'a session token from POST /v1/sessions' },
        apiKey: { type: 'http', scheme: 'bearer', description: 'an API key, tk_… (quota routes only)' },
        adminToken: { type: 'http', scheme: 'bearer', description: 'TALLY_ADMIN_TOKEN' },
        serviceToken: { type: 'http', scheme: 'bearer', description: 'TALLY_SERVICE_TOKEN' },
      },
      schemas: { Problem: plain(schemas.ProblemSchema) },
    },
  };
}

/** The answers every route of a kind can give, unless the route describes them itself. */
function impliedResponses(route: RouteDefinition): Record<number, ResponseSpec> {
  const implied: Record<number, ResponseSpec> = {};
  const readsText =
    route.body !== undefined || pathParams(route.path).length > 0 || route.query !== undefined || route.clientAddress === true || route.idempotencyKey === true;
  if (readsText)
    implied[400] = { description: 'the request is malformed: the body is not JSON or does not match the schema, or a parameter is not well-formed text' };
  if (route.auth !== 'none') implied[401] = { description: 'missing or invalid credentials' };
  if (route.auth === 'user') {
    implied[403] = {
      description:
        route.apiKeys === true
          ? 'the API key lacks the scope this operation needs, or the user is blocked'
          : 'an API key was presented (this route takes a session token), or the user is blocked',
    };
  }
  if (route.auth === 'admin' || route.auth === 'service') {
    implied[403] = { description: `the route is disabled: ${route.auth === 'admin' ? 'TALLY_ADMIN_TOKEN' : 'TALLY_SERVICE_TOKEN'} is not set` };
  }
  if (route.body !== undefined) {
    implied[413] = { description: 'the body is larger than 64 KiB' };
    implied[415] = { description: 'the body is not application/json' };
  }
  if (route.tag !== 'operations') {
    implied[503] = {
      description: 'the database is unreachable, the node is full or shutting down, or the owner cannot be reached: try again after Retry-After',
      headers: ['Retry-After'],
    };
  }
  return implied;
}

function responses(route: RouteDefinition): Record<string, unknown> {
  const all: Record<number, ResponseSpec> = { ...impliedResponses(route), ...route.responses };
  const out: Record<string, unknown> = {};
  for (const code of Object.keys(all)
    .map(Number)
    .sort((a, b) => a - b)) {
    out[code] = response(code, all[code]!);
  }
  out.default = response(500, { description: 'an unexpected error; the answer reveals nothing, the log has the details' });
  return out;
}

function response(code: number, spec: ResponseSpec): Record<string, unknown> {
  const out: Record<string, unknown> = { description: spec.description };
  const headers = [...(spec.headers ?? []), ...(code === 401 ? (['WWW-Authenticate'] as const) : [])];
  if (headers.length > 0) out.headers = Object.fromEntries(headers.map((name) => [name, { ...HEADERS[name], required: alwaysSent(code, name) }]));
  if (spec.schema !== undefined) out.content = { [spec.mediaType ?? 'application/json']: { schema: plain(spec.schema) } };
  else if (code >= 400) out.content = { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } };
  return out;
}

/**
 * Whether an answer with this status always carries the header: a refusal always says when
 * to come back and, for a quota refusal, which limit refused; a success may come from a tier
 * without limits (or without its owner, `fail_open`), which has no limit to describe.
 */
function alwaysSent(code: number, header: ResponseHeader | 'WWW-Authenticate'): boolean {
  if (header === 'WWW-Authenticate') return true;
  if (code === 429) return header === 'Retry-After' || RATE_LIMIT_HEADERS.includes(header);
  return code === 503 && header === 'Retry-After';
}

function plain(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema));
}
