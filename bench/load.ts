/**
 * The load generator: wrk (C, epoll), the cheapest HTTP load on a 2-core machine, so that
 * as much CPU as possible is left to the server under test. Every target is driven with the
 * same settings: POST /v1/quota/consume, body {"cost":1}, rotating through the same list of
 * Authorization headers, keep-alive connections, no pipelining.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  socketErrors: number;
}

export interface LoadOptions {
  url: string;
  authorizations: string[];
  durationSeconds: number;
  connections: number;
}

export function ensureWrk(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' }).trim();
  } catch {
    if (process.getuid?.() !== 0) throw new Error('wrk is not installed: apt-get install wrk');
    console.error('[bench] installing wrk (apt-get install wrk)');
    try {
      execFileSync('apt-get', ['install', '-y', '-qq', 'wrk'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
      execFileSync('apt-get', ['install', '-y', '-qq', 'wrk'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    }
    return execFileSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' }).trim();
  }
}

function script(authorizations: string[]): string {
  const list = authorizations.map((value) => JSON.stringify(value)).join(',\n  ');
  return `
local auth = {
  ${list}
}
local requests = {}
local n = 0
init = function(args)
  for i, a in ipairs(auth) do
    requests[i] = wrk.format("POST", "/v1/quota/consume", { ["Authorization"] = a, ["Content-Type"] = "application/json" }, '{"cost":1}')
  end
end
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
`;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const wrk = ensureWrk();
  const dir = mkdtempSync(join(tmpdir(), 'tally-bench-'));
  const path = join(dir, 'consume.lua');
  writeFileSync(path, script(options.authorizations));
  const args = ['-t1', `-c${options.connections}`, `-d${options.durationSeconds}s`, '--latency', '-s', path, options.url];
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(wrk, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text}`))));
  });
  const match = /RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(output);
  if (match === null) throw new Error(`unexpected wrk output: ${output}`);
  const [requests, durationUs, p50, p99, non2xx, socketErrors] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const seconds = durationUs / 1e6;
  return { requests, seconds, rps: requests / seconds, p50Ms: p50 / 1000, p99Ms: p99 / 1000, non2xx, socketErrors };
}
