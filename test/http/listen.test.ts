import { createServer } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpServer } from '../../src/http/app.js';
import type { Credentials } from '../../src/http/auth.js';
import { ListenError } from '../../src/http/listen.js';

function server(): HttpServer {
  return new HttpServer({
    routes: [],
    credentials: {} as Credentials,
    adminToken: undefined,
    serviceToken: undefined,
    trustProxy: false,
    metrics: { observe() {} },
    log: pino({ level: 'silent' }),
  });
}

/** A port free now. Not 0: the kernel lets no one share a port it picked itself, reuse or not. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

const started: HttpServer[] = [];
afterEach(() => {
  for (const s of started.splice(0)) s.stopAccepting();
});

describe('HttpServer.listen', () => {
  it('listens exclusively: a second server on the same port fails, saying the port is in use', async () => {
    const first = server();
    started.push(first);
    const port = await freePort();
    await first.listen('127.0.0.1', port);
    const second = server();
    started.push(second);
    const refused = await second.listen('127.0.0.1', port).then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(ListenError);
    expect(refused).toMatchObject({ code: 'EADDRINUSE', port, message: `cannot listen on 127.0.0.1:${port}: the port is already in use by another process` });
  });
});
