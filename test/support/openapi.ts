/**
 * Holds every answer a test receives to the node's own OpenAPI document: the status must be
 * one the operation lists, the body must match the schema of that status and media type, the
 * headers the document marks required must be there, and every header the document knows
 * that was sent must be documented for that answer. An API key must only succeed where the
 * operation's security lists it. Unknown paths must answer a 404 or 405 problem.
 *
 * The test client (`http.ts`) runs this on each answer, so every route test is also a test
 * of the document: a route that gains an answer the document does not describe fails them.
 */
import type { ValidateFunction } from 'ajv';
import ajv2020 from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';

// CommonJS modules: their classes and functions are the default export's `default`.
const Ajv2020 = ajv2020.default;
const addFormats = ajvFormats.default;

type Json = Record<string, any>;

export interface Exchange {
  method: string;
  path: string;
  /** The bearer token the request carried, if any. */
  token?: string;
  status: number;
  headers: Headers;
  text: string;
}

/** Headers the document describes, in lower case: the ones whose presence is checked. */
const KNOWN_HEADERS = [
  'ratelimit-policy',
  'ratelimit',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'retry-after',
  'tally-degraded',
  'www-authenticate',
];

interface Operation {
  pattern: RegExp;
  method: string;
  template: string;
  operation: Json;
}

export class OpenApiConformance {
  private readonly ajv: InstanceType<typeof Ajv2020>;
  private readonly operations: Operation[];
  private readonly validators = new Map<unknown, ValidateFunction>();

  constructor(readonly document: Json) {
    this.ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(this.ajv);
    this.ajv.addSchema(document.components.schemas.Problem, '#/components/schemas/Problem');
    this.operations = [];
    for (const [template, methods] of Object.entries(document.paths as Record<string, Json>)) {
      const pattern = new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`);
      for (const [method, operation] of Object.entries(methods)) this.operations.push({ pattern, method, template, operation });
    }
    // A literal path wins over a template that also matches it (`/v1/sessions/logout-all`).
    this.operations.sort((a, b) => Number(a.template.includes('{')) - Number(b.template.includes('{')));
  }

  /** Every way `exchange` departs from the document; empty when it conforms. */
  check(exchange: Exchange): string[] {
    const path = exchange.path.split('?')[0]!;
    const method = exchange.method.toLowerCase();
    const name = `${exchange.method} ${path} → ${exchange.status}`;
    const candidates = this.operations.filter((op) => op.pattern.test(path));
    const found = candidates.find((op) => op.method === method);
    if (found === undefined) {
      const expected = candidates.length > 0 ? 405 : 404;
      if (exchange.status !== expected) return [`${name}: no operation in the document, so ${expected} was expected`];
      return this.body(name, exchange, { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } });
    }
    const { operation, template } = found;
    const where = `${exchange.method} ${template} → ${exchange.status}`;
    const response = (operation.responses as Json)[String(exchange.status)] ?? (exchange.status === 500 ? operation.responses.default : undefined);
    if (response === undefined) return [`${where}: the document lists no ${exchange.status} for this operation`];
    const failures = this.body(where, exchange, response.content);
    const documented = Object.keys((response.headers ?? {}) as Json).map((header) => header.toLowerCase());
    for (const [header, spec] of Object.entries((response.headers ?? {}) as Json)) {
      if (spec.required === true && !exchange.headers.has(header)) failures.push(`${where}: the required header ${header} is missing`);
    }
    for (const header of KNOWN_HEADERS) {
      if (exchange.headers.has(header) && !documented.includes(header))
        failures.push(`${where}: sent ${header}, which the document does not list for this answer`);
    }
    if (exchange.status < 400 && operation.security !== undefined && exchange.token?.startsWith('tk_') === true) {
      const schemes = ((operation.security ?? []) as Json[]).flatMap((requirement) => Object.keys(requirement));
      if (!schemes.includes('apiKey')) failures.push(`${where}: an API key succeeded, but the operation's security does not list apiKey`);
    }
    return failures;
  }

  private body(where: string, exchange: Exchange, content: Json | undefined): string[] {
    if (content === undefined) {
      return exchange.text.length === 0 ? [] : [`${where}: a body was sent, but the document describes none`];
    }
    const sent = (exchange.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const mediaType = Object.keys(content).find((type) => type.split(';')[0]!.trim() === sent);
    if (mediaType === undefined) return [`${where}: content-type ${sent || '(none)'}, the document says ${Object.keys(content).join(' or ')}`];
    const schema = content[mediaType].schema;
    let value: unknown = exchange.text;
    if (sent.endsWith('json')) {
      try {
        value = JSON.parse(exchange.text);
      } catch {
        return [`${where}: the body is not JSON`];
      }
    }
    const validate = this.validators.get(schema) ?? this.ajv.compile(schema);
    this.validators.set(schema, validate);
    if (validate(value)) return [];
    const errors = (validate.errors ?? []).map((error) => `${error.instancePath || '(body)'} ${error.message}`).join('; ');
    return [`${where}: the body does not match the document's schema: ${errors}`];
  }
}

const documents = new Map<string, Promise<OpenApiConformance>>();

/** The conformance checker of the node at `baseUrl`, from its own `/openapi.json`. */
export function conformanceOf(baseUrl: string): Promise<OpenApiConformance> {
  let checker = documents.get(baseUrl);
  if (checker === undefined) {
    checker = fetch(`${baseUrl}/openapi.json`)
      .then((response) => response.json())
      .then((document) => new OpenApiConformance(document as Json));
    documents.set(baseUrl, checker);
    checker.catch(() => documents.delete(baseUrl));
  }
  return checker;
}
