/**
 * The fallback load generator, for machines without wrk: `connections` keep-alive sockets,
 * each with one request in flight (no pipelining). Requests are serialised once; of each
 * answer only the status line and `content-length` are read, which is all that is needed to
 * find where the next answer starts. It spends more CPU per request than wrk, so the server
 * under test gets less of the machine: compare targets within a run, never across
 * generators.
 */
import { connect, type Socket } from 'node:net';
import type { LoadOptions, LoadResult } from './load.js';
import { CONSUME_BODY } from './workload.js';

const HEADER_END = Buffer.from('\r\n\r\n');

interface Tally {
  latenciesUs: number[];
  status2xx: number;
  status429: number;
  statusOther: number;
  socketErrors: number;
}

export async function runNodeLoad(options: LoadOptions): Promise<LoadResult> {
  const url = new URL(options.url);
  const host = url.hostname;
  const port = Number(url.port || 80);
  const body = Buffer.from(CONSUME_BODY);
  const requests = options.authorizations.map((authorization) =>
    Buffer.concat([
      Buffer.from(
        `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: ${authorization}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        'latin1',
      ),
      body,
    ]),
  );
  const tally: Tally = { latenciesUs: [], status2xx: 0, status429: 0, statusOther: 0, socketErrors: 0 };
  let nextRequest = 0;
  let running = true;
  const sockets = new Set<Socket>();

  const open = (): void => {
    if (!running) return;
    const socket = connect({ host, port, noDelay: true });
    sockets.add(socket);
    let pending: Buffer | null = null;
    let sentAt = 0n;
    let inFlight = false;
    let closed = false;
    const send = () => {
      if (!running) return;
      const request = requests[nextRequest]!;
      nextRequest = (nextRequest + 1) % requests.length;
      sentAt = process.hrtime.bigint();
      inFlight = true;
      socket.write(request);
    };
    const broken = () => {
      if (closed) return;
      closed = true;
      socket.destroy();
      sockets.delete(socket);
      if (running) {
        if (inFlight) tally.socketErrors++;
        open();
      }
    };
    socket.once('connect', send);
    socket.on('data', (chunk: Buffer) => {
      let data = pending === null ? chunk : Buffer.concat([pending, chunk]);
      pending = null;
      for (;;) {
        const end = data.indexOf(HEADER_END);
        if (end < 0) break;
        const status = Number(data.toString('latin1', 9, 12));
        const length = contentLength(data.toString('latin1', 0, end));
        if (length === null) return broken(); // only content-length framing is expected
        const total = end + 4 + length;
        if (data.length < total) break;
        if (!running) return;
        tally.latenciesUs.push(Number(process.hrtime.bigint() - sentAt) / 1000);
        if (status >= 200 && status < 300) tally.status2xx++;
        else if (status === 429) tally.status429++;
        else tally.statusOther++;
        inFlight = false;
        data = data.subarray(total);
        send();
      }
      if (data.length > 0) pending = Buffer.from(data);
    });
    socket.on('error', () => {}); // counted in 'close'
    socket.on('close', broken);
  };

  const start = process.hrtime.bigint();
  for (let i = 0; i < options.connections; i++) open();
  await new Promise((resolve) => setTimeout(resolve, options.durationSeconds * 1000));
  running = false;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  for (const socket of sockets) socket.destroy();

  const sorted = Float64Array.from(tally.latenciesUs).sort();
  const percentile = (p: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
  const responses = sorted.length;
  return {
    generator: 'node',
    connections: options.connections,
    seconds,
    requests: responses,
    rps: responses / seconds,
    p50Ms: percentile(50) / 1000,
    p99Ms: percentile(99) / 1000,
    status2xx: tally.status2xx,
    status429: tally.status429,
    statusOther: tally.statusOther,
    socketErrors: tally.socketErrors,
  };
}

function contentLength(head: string): number | null {
  const at = head.toLowerCase().indexOf('\r\ncontent-length:');
  if (at < 0) return /^HTTP\/1\.1 (204|304)/.test(head) ? 0 : null;
  const lineEnd = head.indexOf('\r\n', at + 2);
  const value = Number.parseInt(head.slice(at + 17, lineEnd < 0 ? head.length : lineEnd), 10);
  return Number.isNaN(value) ? null : value;
}
