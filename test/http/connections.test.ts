/**
 * What clients do to connections, on raw sockets: pipelining, leaving in the middle of a
 * body, leaving while the node is still working on their request, garbage on the wire.
 * The node keeps serving, and never charges a consume whose client did not get its answer
 * because it left while the request was being authenticated.
 *
 * uWebSockets.js serves pipelined requests only while each is answered before the next is
 * read: when a request arrives behind one still being worked on, it closes the connection
 * and nothing is sent for either (uNetworking/uWebSockets.js#277, "wontfix").
 */
import { connect, type Socket } from 'node:net';
import { beforeEach, describe, expect, it } from 'vitest';
import { createKey, createUser, type StartedNode, type TestUser, useTestNode } from '../support/tally.js';

const node = useTestNode();
let t: StartedNode;
let port: number;
beforeEach(() => {
  t = node();
  port = Number(new URL(t.baseUrl).port);
});

/** Writes `data` in one write and collects what comes back until the node closes or `waitMs` passes. */
function exchange(data: string, waitMs = 500): Promise<{ text: string; closedByNode: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let closedByNode = false;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedByNode });
    }, waitMs);
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('end', () => (closedByNode = true));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedByNode });
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET') closedByNode = true;
      else reject(error);
    });
    socket.write(data);
  });
}

/** A consume of one request and `tokens` tokens: the default tiers count tokens on their budget. */
const tokens = (n: number) => `{"amounts":{"tokens":${n}}}`;

function consumeRequest(token: string, body = tokens(1)): string {
  return `POST /v1/quota/consume HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** The status lines of the answers in `text`; a body is not followed by CRLF, so they are searched, not split. */
const statusLines = (text: string) => [...text.matchAll(/HTTP\/1\.1 \d{3} [^\r]*/g)].map((match) => match[0]);

/** What the user's monthly budget has been charged so far. */
async function budgetUsed(user: TestUser): Promise<number> {
  const quota = await t.api('GET', '/v1/quota', { token: user.token });
  expect(quota.status).toBe(200);
  const budget = (quota.body.limits as { kind: string; limit: number; remaining: number }[]).find((limit) => limit.kind === 'budget')!;
  return budget.limit - budget.remaining;
}

/** `tally_http_requests_total` for one route and status, 0 when absent. */
async function requestsCounted(route: string, status: number): Promise<number> {
  const metrics = await t.api('GET', '/metrics');
  const line = metrics.text.split('\n').find((l: string) => l.startsWith(`tally_http_requests_total{route="${route}",status="${status}"} `));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

function waitForClose(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}

describe('connections', () => {
  it('answers pipelined consumes with an API key in order, each charged once', async () => {
    const user = await createUser(t.api);
    const { key } = await createKey(t.api, user);
    expect((await t.api('POST', '/v1/quota/consume', { token: key })).status).toBe(200); // the actor is active now
    const before = await budgetUsed(user);

    const { text } = await exchange(consumeRequest(key) + consumeRequest(key, tokens(2)) + consumeRequest(key, tokens(3)));

    expect(statusLines(text)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(await budgetUsed(user)).toBe(before + 6);
  });

  it('charges nothing for pipelined consumes it cannot answer', async () => {
    const user = await createUser(t.api);
    const before = await budgetUsed(user);

    // A session token is verified asynchronously, so the second request arrives while the
    // first is still being worked on.
    const { text, closedByNode } = await exchange(consumeRequest(user.token) + consumeRequest(user.token));

    const answered = statusLines(text).filter((line) => line === 'HTTP/1.1 200 OK').length;
    expect(answered === 2 || closedByNode).toBe(true);
    expect(await budgetUsed(user)).toBe(before + answered);
    expect((await t.api('POST', '/v1/quota/consume', { token: user.token })).status).toBe(200);
  });

  it('charges nothing when the client leaves in the middle of the body', async () => {
    const user = await createUser(t.api);
    const before = await budgetUsed(user);
    const leftBefore = await requestsCounted('POST /v1/quota/consume', 499);
    const socket = connect(port, '127.0.0.1');
    socket.write(consumeRequest(user.token).replace(/Content-Length: \d+/, 'Content-Length: 60'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    await waitForClose(socket);

    expect(await budgetUsed(user)).toBe(before);
    // The request is over, not left waiting for a body that will never come.
    const metrics = await t.api('GET', '/metrics');
    expect(metrics.text).toMatch(/^tally_http_requests_in_flight 1$/m); // the scrape itself
    expect(await requestsCounted('POST /v1/quota/consume', 499)).toBe(leftBefore + 1);
  });

  it('keeps serving when clients leave while their requests are being worked on', async () => {
    const user = await createUser(t.api);
    const login = JSON.stringify({ email: user.email, password: user.password });
    const requests = [
      `POST /v1/sessions HTTP/1.1\r\nHost: tally\r\nContent-Type: application/json\r\nContent-Length: ${login.length}\r\n\r\n${login}`,
      `GET /v1/user/profile HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer ${user.token}\r\n\r\n`,
      `POST /v1/keys HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer ${user.token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
    ];
    const sockets = requests.flatMap((request) =>
      Array.from({ length: 5 }, () => {
        const socket = connect(port, '127.0.0.1');
        socket.on('error', () => {});
        socket.write(request, () => socket.destroy());
        return socket;
      }),
    );
    await Promise.all(sockets.map(waitForClose));
    // The node finishes what the leavers started (logins take a scrypt hash each), then has
    // nothing left in flight but the scrape asking.
    const settled = (text: string) =>
      /^tally_http_requests_in_flight 1$/m.test(text) && /^tally_http_requests_total\{route="POST \/v1\/sessions",status="499"\} /m.test(text);
    const deadline = Date.now() + 10_000;
    let metrics = await t.api('GET', '/metrics');
    while (!settled(metrics.text) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      metrics = await t.api('GET', '/metrics');
    }

    expect((await t.api('GET', '/v1/user/profile', { token: user.token })).status).toBe(200);
    // A login takes a scrypt hash: its clients were gone before it ended, and are counted as such.
    expect(metrics.text).toMatch(/^tally_http_requests_total\{route="POST \/v1\/sessions",status="499"\} [1-5]$/m);
    expect(metrics.text).toMatch(/^tally_http_requests_in_flight 1$/m);
  });

  it('closes connections that send garbage, and keeps serving', async () => {
    for (const garbage of ['GARBAGE\r\n\r\n', 'POST /v1/quota/consume HTTP/1.1\r\nContent-Length: -5\r\n\r\n', '\u0000\u0001\u0002\r\n\r\n']) {
      const { text } = await exchange(garbage, 300);
      expect(text === '' || text.startsWith('HTTP/1.1 4'), JSON.stringify(garbage)).toBe(true);
    }
    expect((await t.api('GET', '/health/live')).status).toBe(200);
  });
});
