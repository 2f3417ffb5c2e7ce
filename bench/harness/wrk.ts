/**
 * wrk as the load generator: one thread (`-t1`), since on 2 cores the other core belongs to
 * the server under test. A Lua script, generated per run into a temporary file, serialises
 * one request per API key once (in `init`) and hands them out in turn (`request`), counts
 * answers by status (`response`), and prints one JSON line at the end (`done`).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProcess } from './children.js';
import type { LoadOptions, LoadResult } from './load.js';
import { CONSUME_BODY } from './workload.js';

function which(program: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** The path of wrk; installs it with apt-get when missing and we are root. Null if neither. */
export function findOrInstallWrk(): string | null {
  const found = which('wrk');
  if (found !== null) return found;
  if (process.getuid?.() !== 0 || which('apt-get') === null) return null;
  const apt = (args: string[]) =>
    execFileSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  console.error('[bench] wrk is missing: apt-get install -y wrk');
  try {
    apt(['install', '-y', '-qq', 'wrk']);
  } catch {
    try {
      console.error('[bench] install failed: apt-get update, then again');
      apt(['update', '-qq']);
      apt(['install', '-y', '-qq', 'wrk']);
    } catch {
      return null;
    }
  }
  return which('wrk');
}

function luaString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * The consume script: reads one `Authorization` value per line of `keysFile` (a file, since
 * a Lua literal of 300,000 keys is more than wrk's LuaJIT accepts), serialises one request
 * per key in `init`, hands them out in turn, and prints a `BENCH_RESULT {…}` line at the end.
 */
export function consumeScript(path: string, keysFile: string, body = CONSUME_BODY): string {
  return `
local path = ${luaString(path)}
local body = ${luaString(body)}
local requests = {}
local next_request = 0
-- Globals, so that done() can read each thread's counts with thread:get().
ok, limited, other = 0, 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for authorization in io.lines(${luaString(keysFile)}) do
    requests[#requests + 1] = wrk.format("POST", path, { ["Authorization"] = authorization, ["Content-Type"] = "application/json" }, body)
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1
  elseif status == 429 then limited = limited + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local n2xx, n429, nother = 0, 0, 0
  for _, thread in ipairs(threads) do
    n2xx = n2xx + thread:get("ok")
    n429 = n429 + thread:get("limited")
    nother = nother + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format('BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%.1f,"p99_us":%.1f,"status_2xx":%d,"status_429":%d,"status_other":%d,"socket_errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    n2xx, n429, nother, e.connect + e.read + e.write + e.timeout))
end
`;
}

/** Writes one Authorization value per line, as `consumeScript` reads them. */
export function writeKeysFile(file: string, authorizations: readonly string[]): void {
  writeFileSync(file, `${authorizations.join('\n')}\n`);
}

/** The summary `consumeScript` prints, from wrk's output. */
export function readSummary(output: string): WrkSummary {
  const line = /^BENCH_RESULT (.*)$/m.exec(output);
  if (line === null) throw new Error(`wrk printed no result: ${output}`);
  return JSON.parse(line[1]!) as WrkSummary;
}

export interface WrkSummary {
  requests: number;
  duration_us: number;
  p50_us: number;
  p99_us: number;
  status_2xx: number;
  status_429: number;
  status_other: number;
  socket_errors: number;
}

export async function runWrk(wrk: string, options: LoadOptions): Promise<LoadResult> {
  const url = new URL(options.url);
  const dir = mkdtempSync(join(tmpdir(), 'tally-bench-wrk-'));
  const scriptPath = join(dir, 'consume.lua');
  try {
    const keysPath = join(dir, 'keys.txt');
    writeKeysFile(keysPath, options.authorizations);
    writeFileSync(scriptPath, consumeScript(url.pathname, keysPath));
    const args = ['-t1', `-c${options.connections}`, `-d${options.durationSeconds}s`, '-s', scriptPath, options.url];
    const { code, output } = await startProcess('wrk', wrk, args).stdout();
    if (code !== 0) throw new Error(`wrk exited with ${code}: ${output}`);
    const s = readSummary(output);
    const seconds = s.duration_us / 1e6;
    return {
      generator: 'wrk',
      connections: options.connections,
      seconds,
      requests: s.requests,
      rps: s.requests / seconds,
      p50Ms: s.p50_us / 1000,
      p99Ms: s.p99_us / 1000,
      status2xx: s.status_2xx,
      status429: s.status_429,
      statusOther: s.status_other,
      socketErrors: s.socket_errors,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
