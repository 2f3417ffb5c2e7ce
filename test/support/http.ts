/**
 * A small HTTP client for tests: JSON in, status + headers + parsed body out. Every answer is
 * checked against the node's OpenAPI document (`openapi.ts`): one the document does not
 * describe fails the test that received it.
 */
import { conformanceOf } from './openapi.js';

interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

interface ApiOptions {
  token?: string;
  body?: unknown;
  /** Sent as is (for malformed bodies); wins over `body`. */
  raw?: string | Uint8Array;
  headers?: Record<string, string>;
  /** Skip the OpenAPI check (only for answers from something that is not a Tally node). */
  unchecked?: boolean;
}

export type Api = <T = any>(method: string, path: string, options?: ApiOptions) => Promise<ApiResponse<T>>;

export function apiClient(baseUrl: string): Api {
  return async function call(method, path, options = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    let body: string | Uint8Array | undefined;
    if (method === 'GET' || method === 'HEAD')
      body = undefined; // fetch cannot send one
    else if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
    const conformance = options.unchecked === true ? undefined : await conformanceOf(baseUrl);
    const response = await fetch(baseUrl + path, { method, headers, body });
    const text = await response.text();
    const departures = conformance?.check({
      method,
      path,
      ...(options.token === undefined ? {} : { token: options.token }),
      status: response.status,
      headers: response.headers,
      text,
    });
    if (departures !== undefined && departures.length > 0)
      throw new Error(`the answer departs from the OpenAPI document:\n  ${departures.join('\n  ')}\n${text.slice(0, 500)}`);
    let parsed: unknown;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    return { status: response.status, headers: response.headers, body: parsed as any, text };
  };
}
