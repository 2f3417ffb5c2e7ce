/**
 * Writing answers through uWebSockets.js. A response written after an await must be corked
 * (one syscall for status, headers and body), and nothing may touch a response whose client
 * has gone: `onAborted` sets `aborted` and every write checks it.
 */
import type { HttpResponse } from 'uWebSockets.js';
import type { Problem } from './problem.js';

/** Reason phrases (RFC 9110 §15), also the `title` of problem details. */
export const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};
const STATUS_LINES = new Map(Object.entries(STATUS_TEXT).map(([code, text]) => [Number(code), `${code} ${text}`]));

export function statusLine(status: number): string {
  return STATUS_LINES.get(status) ?? String(status);
}

export interface Exchange {
  res: HttpResponse;
  aborted: boolean;
  requestId: string;
  /** Ask the client to close the connection (the node is draining). */
  closeConnection: boolean;
}

export function writeJson(exchange: Exchange, status: number, body: unknown, headers?: Record<string, string>, contentType = 'application/json'): void {
  write(exchange, status, body === undefined ? undefined : JSON.stringify(body), headers, contentType);
}

export function writeProblem(exchange: Exchange, problem: Problem, headers?: Record<string, string>): void {
  writeJson(exchange, problem.status, problem, headers, 'application/problem+json');
}

export function write(exchange: Exchange, status: number, text: string | undefined, headers: Record<string, string> | undefined, contentType: string): void {
  if (exchange.aborted) return;
  exchange.aborted = true; // answered: nothing more may be written
  const { res } = exchange;
  res.cork(() => {
    res.writeStatus(statusLine(status));
    res.writeHeader('x-request-id', exchange.requestId);
    if (headers !== undefined) {
      for (const name in headers) res.writeHeader(name, headers[name]!);
    }
    if (text === undefined) {
      res.endWithoutBody(0, exchange.closeConnection);
      return;
    }
    res.writeHeader('content-type', contentType);
    res.end(text, exchange.closeConnection);
  });
}
