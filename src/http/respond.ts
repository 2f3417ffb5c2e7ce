/**
 * Writing answers through uWebSockets.js. A response written after an await must be corked
 * (one syscall for status, headers and body), and nothing may touch a response whose client
 * has gone: `onAborted` sets `aborted` and every write checks it.
 */
import type { HttpResponse } from 'uWebSockets.js';
import { type Problem, STATUS_TEXT } from '../api/index.js';

const STATUS_LINES = new Map(Object.entries(STATUS_TEXT).map(([code, text]) => [Number(code), `${code} ${text}`]));

function statusLine(status: number): string {
  return STATUS_LINES.get(status) ?? String(status);
}

export interface Exchange {
  res: HttpResponse;
  /** Nothing more may be written: answered, or the client has gone. */
  aborted: boolean;
  /** The client closed the connection before it was answered (uWebSockets.js's `onAborted`). */
  clientGone: boolean;
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

/**
 * Writes the answer corked: status, headers and body in one syscall.
 *
 * uWebSockets.js takes each header through its own native call, converting both strings;
 * the headers are joined into one block instead and written by one call (uWebSockets.js
 * writes `name: value` and CRLF; the block carries the CRLFs between its lines). This is
 * safe because no header value here can hold CR or LF: they are numbers, constants, limit
 * names (validated to `[A-Za-z0-9_.:-]`) and request ids (validated or our own). A 200 needs
 * no status line: it is uWebSockets.js's default.
 */
export function write(exchange: Exchange, status: number, text: string | undefined, headers: Record<string, string> | undefined, contentType: string): void {
  if (exchange.aborted) return;
  exchange.aborted = true; // answered: nothing more may be written
  let head = exchange.requestId;
  if (headers !== undefined) {
    for (const name in headers) head += `\r\n${name}: ${headers[name]!}`;
  }
  if (text !== undefined) head += `\r\ncontent-type: ${contentType}`;
  const { res } = exchange;
  res.cork(() => {
    if (status !== 200) res.writeStatus(statusLine(status));
    res.writeHeader('x-request-id', head);
    if (text === undefined) res.endWithoutBody(0, exchange.closeConnection);
    else res.end(text, exchange.closeConnection);
  });
}

/**
 * Writes the status and headers of a streamed answer (uWebSockets.js then sends the body
 * chunked). Returns false when the client has gone. The headers go as one block, as in `write`.
 */
export function startStream(exchange: Exchange, status: number, headers: Record<string, string> | undefined, contentType: string): boolean {
  if (exchange.aborted) return false;
  let head = exchange.requestId;
  if (headers !== undefined) {
    for (const name in headers) head += `\r\n${name}: ${headers[name]!}`;
  }
  head += `\r\ncontent-type: ${contentType}`;
  const { res } = exchange;
  res.cork(() => {
    if (status !== 200) res.writeStatus(statusLine(status));
    res.writeHeader('x-request-id', head);
  });
  return true;
}

/** Ends a streamed answer. */
export function endStream(exchange: Exchange): void {
  if (exchange.aborted) return;
  exchange.aborted = true;
  const { res } = exchange;
  res.cork(() => res.end(undefined, exchange.closeConnection));
}
