/**
 * The HTTP transport, for callers outside NATS: the NATS API's operations on Tally's service
 * routes (`POST /v1/service/…`, the same bodies and replies as JSON), with the service token
 * (`TALLY_SERVICE_TOKEN`). `fetch` keeps connections alive by itself. There is no shard map
 * over HTTP: the node behind the load balancer routes, and batches what it forwards.
 *
 * Tally takes bodies up to 64 KiB; a batch whose JSON is larger is sent as two halves (and
 * so on), answered in order as one.
 */
import { errorFromProblem, isProblem, TallyError, TimeoutError, UnavailableError } from './errors.js';
import type { Operation, Transport } from './transport.js';

export interface HttpOptions {
  /** Where Tally is, e.g. `https://tally.internal` (its load balancer). */
  url: string;
  /** The service token (`TALLY_SERVICE_TOKEN`). */
  token: string;
  /** Another `fetch` (a test double, an instrumented one); default the global one. */
  fetch?: typeof fetch;
}

const PATHS: Record<Operation, string> = {
  'quota.consume': '/v1/service/quota/consume',
  'quota.get': '/v1/service/quota/get',
  'quota.reserve': '/v1/service/quota/reserve',
  'quota.settle': '/v1/service/quota/settle',
  'quota.release': '/v1/service/quota/release',
  'sessions.verify': '/v1/service/sessions/verify',
  'limiter.check': '/v1/limiter/check',
  'usage.get': '/v1/service/usage',
};

/** Below Tally's 64 KiB limit on a body, with room for what the text does not count. */
const MAX_BODY_BYTES = 60 * 1024;

export class HttpTransport implements Transport {
  readonly maxItems = 1000;
  readonly map = null;
  private readonly base: string;
  private readonly fetch: typeof fetch;
  private readonly authorization: string;

  constructor(options: HttpOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.fetch = options.fetch ?? fetch;
    this.authorization = `Bearer ${options.token}`;
  }

  async request(operation: Operation, body: unknown, timeoutMs: number): Promise<unknown> {
    const text = JSON.stringify(body);
    const items = (body as { items?: unknown[] }).items;
    if (Buffer.byteLength(text) > MAX_BODY_BYTES && Array.isArray(items) && items.length > 1) {
      const half = Math.ceil(items.length / 2);
      const started = performance.now();
      const first = (await this.request(operation, { items: items.slice(0, half) }, timeoutMs)) as { results: unknown[] };
      const rest = (await this.request(operation, { items: items.slice(half) }, timeoutMs - (performance.now() - started))) as { results: unknown[] };
      return { results: [...first.results, ...rest.results] };
    }
    return this.post(PATHS[operation], text, timeoutMs);
  }

  async close(): Promise<void> {}

  private async post(path: string, text: string, timeoutMs: number): Promise<unknown> {
    let response: Response;
    try {
      response = await this.fetch(this.base + path, {
        method: 'POST',
        headers: { authorization: this.authorization, 'content-type': 'application/json' },
        body: text,
        signal: AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs))),
      });
    } catch (error) {
      const name = (error as Error)?.name;
      if (name === 'TimeoutError' || name === 'AbortError')
        throw new TimeoutError('timeout', 0, `Tally did not answer within ${Math.round(timeoutMs)} ms`, { cause: error });
      // Refused before a byte was sent (nothing listens): nothing was carried out. Any other
      // failure may have come after the request was read, so it is not said to be unsent.
      const code = ((error as { cause?: { code?: string } })?.cause as { code?: string } | undefined)?.code;
      if (code === 'ECONNREFUSED' || code === 'ENOTFOUND')
        throw new UnavailableError('unavailable', 0, `Tally cannot be reached at ${this.base}`, { cause: error });
      throw new TimeoutError('connection', 0, `the request to Tally failed: ${(error as Error)?.message ?? error}`, { cause: error });
    }
    let answer: unknown;
    try {
      answer = await response.json();
    } catch (error) {
      throw new TallyError('unreadable', response.status, `Tally answered ${response.status} without a JSON body`, { cause: error });
    }
    if (!response.ok) {
      if (isProblem(answer)) throw errorFromProblem(answer);
      throw new TallyError('unknown', response.status, `Tally answered ${response.status}`);
    }
    return answer;
  }
}
