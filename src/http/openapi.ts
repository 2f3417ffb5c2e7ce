/**
 * The OpenAPI 3.1 document, generated from the route list. OpenAPI 3.1 schemas are JSON
 * Schema 2020-12, which TypeBox schemas already are; only TypeBox's own symbol-keyed
 * annotations are dropped (JSON.stringify skips symbol keys).
 */
import type { TSchema } from '@sinclair/typebox';
import { pathParams, type RouteDefinition } from './route.js';
import { ProblemSchema } from './schemas.js';

const SECURITY: Record<RouteDefinition['auth'], Record<string, string[]>[] | undefined> = {
  none: undefined,
  user: [{ sessionToken: [] }, { apiKey: [] }],
  admin: [{ adminToken: [] }],
  service: [{ serviceToken: [] }],
};

export function openApiDocument(routes: readonly RouteDefinition[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const operation: Record<string, unknown> = {
      operationId: `${route.method}${route.path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
      summary: route.summary,
      tags: [route.tag],
      responses: responses(route),
    };
    const security = SECURITY[route.auth];
    if (security !== undefined) operation.security = security;
    const params = pathParams(route.path).map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
    if (route.path === '/v1/quota/consume') {
      params.push({ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string' } } as (typeof params)[number]);
    }
    if (params.length > 0) operation.parameters = params;
    if (route.body !== undefined) {
      operation.requestBody = { required: route.bodyOptional !== true, content: { 'application/json': { schema: plain(route.body) } } };
    }
    paths[route.path] ??= {};
    paths[route.path]![route.method] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Tally',
      version,
      description: 'User profiles, sessions, API keys and real-time quotas. Errors are RFC 9457 problem details.',
    },
    paths,
    components: {
      securitySchemes: {
        sessionToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        apiKey: { type: 'http', scheme: 'bearer', description: 'an API key, tk_…' },
        adminToken: { type: 'http', scheme: 'bearer', description: 'TALLY_ADMIN_TOKEN' },
        serviceToken: { type: 'http', scheme: 'bearer', description: 'TALLY_SERVICE_TOKEN' },
      },
      schemas: { Problem: plain(ProblemSchema) },
    },
  };
}

function responses(route: RouteDefinition): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [status, spec] of Object.entries(route.responses)) {
    const code = Number(status);
    const contentType = code >= 400 ? 'application/problem+json' : 'application/json';
    const schema = code >= 400 ? { $ref: '#/components/schemas/Problem' } : spec.schema === undefined ? undefined : plain(spec.schema);
    out[status] = schema === undefined ? { description: spec.description } : { description: spec.description, content: { [contentType]: { schema } } };
  }
  if (route.auth !== 'none') out['401'] ??= problemResponse('missing or invalid credentials');
  if (route.body !== undefined) out['400'] ??= problemResponse('the body is not valid JSON or does not match the schema');
  out.default = problemResponse('an error');
  return out;
}

function problemResponse(description: string): Record<string, unknown> {
  return { description, content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
}

function plain(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema));
}
