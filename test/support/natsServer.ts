/**
 * Real nats-server processes with JetStream, for the cluster tests: one server, or a
 * three-server cluster, each on free ports with its own store directory. Each runs in its own
 * process group; `stop()` kills the group, and `stopAllNatsServers()` (in `afterAll`) stops
 * whatever a test left running, pass or fail.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll } from 'vitest';
import { freePort, killGroup } from './children.js';
import { makeTempDir } from './tmp.js';

export interface NatsServer {
  url: string;
  port: number;
  /** Stops the server (SIGKILL to its process group) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and store directory. */
  restart(): Promise<void>;
}

const running = new Set<ChildProcess>();

function binary(): string {
  return process.env.NATS_SERVER_BIN ?? 'nats-server';
}

async function launch(args: string[], env?: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(binary(), args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...env } });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${output}`)), 15_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (${code}) before it was ready:\n${output}`));
    });
  });
  return child;
}

async function server(args: (dir: string) => string[], port: number, env?: Record<string, string>): Promise<NatsServer> {
  const dir = await makeTempDir();
  let child = await launch(args(dir), env);
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    async stop() {
      await killGroup(child);
    },
    async restart() {
      await killGroup(child);
      child = await launch(args(dir), env);
    },
  };
}

/** One server with JetStream, and `extra` arguments (authentication, TLS, a configuration file). */
export async function startNatsServer(extra: string[] = []): Promise<NatsServer> {
  const port = await freePort();
  return server((dir) => ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, ...extra], port);
}

/** The configuration the project ships: accounts TALLY and APPS, their users and permissions. */
const SHIPPED_NATS_CONFIG = fileURLToPath(new URL('../../deploy/nats-server.conf', import.meta.url));

/** The passwords of the shipped configuration's users, as nats-server reads them from its environment. */
export interface NatsPasswords {
  node: string;
  operator: string;
  app: string;
}

/** One server with JetStream, run with the shipped configuration and fresh passwords. */
export async function startSecuredNatsServer(): Promise<NatsServer & { passwords: NatsPasswords }> {
  const port = await freePort();
  // nats-server reads each variable as a configuration value: one starting with a digit is
  // taken for a number and refused. A letter first keeps every password a string.
  const password = () => `p${randomBytes(12).toString('hex')}`;
  const passwords: NatsPasswords = { node: password(), operator: password(), app: password() };
  const env = {
    TALLY_NATS_NODE_PASSWORD: passwords.node,
    TALLY_NATS_OPERATOR_PASSWORD: passwords.operator,
    TALLY_NATS_APP_PASSWORD: passwords.app,
  };
  const started = await server((dir) => ['-c', SHIPPED_NATS_CONFIG, '-a', '127.0.0.1', '-p', String(port), '-sd', dir], port, env);
  return { ...started, passwords };
}

/** Three servers routed into one JetStream cluster, returned once JetStream answers (it has a meta leader). */
export async function startNatsCluster(): Promise<NatsServer[]> {
  const ports = await Promise.all([0, 1, 2].map(() => freePort()));
  const clusterPorts = await Promise.all([0, 1, 2].map(() => freePort()));
  const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
  const servers = await Promise.all(
    [0, 1, 2].map((i) =>
      server(
        (dir) => [
          '-a',
          '127.0.0.1',
          '-p',
          String(ports[i]),
          '-js',
          '-sd',
          dir,
          '-n',
          `tally-test-${i}`,
          '--cluster_name',
          'tally-test',
          '--cluster',
          `nats://127.0.0.1:${clusterPorts[i]}`,
          '--routes',
          routes,
        ],
        ports[i]!,
      ),
    ),
  );
  await waitForJetStream(servers.map((one) => one.url));
  return servers;
}

/** Until `$JS.API.INFO` answers without an error: a new JetStream cluster first elects its meta leader. */
async function waitForJetStream(urls: string[], timeoutMs = 30_000): Promise<void> {
  const nc = await connect({ servers: urls });
  try {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const reply = await nc.request('$JS.API.INFO', '', { timeout: 1000 }).catch(() => null);
      if (reply !== null && (reply.json<{ error?: unknown }>().error ?? null) === null) return;
      if (Date.now() > until) throw new Error(`JetStream did not answer within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await nc.close();
  }
}

export async function stopAllNatsServers(): Promise<void> {
  await Promise.all([...running].map(killGroup));
}

/**
 * One nats-server and one connection to it for a test file, made in `beforeAll` and closed
 * and stopped in `afterAll`: read `server` and `nc` inside the tests.
 */
export function useNatsServer(): { readonly server: NatsServer; readonly nc: NatsConnection } {
  const nats = {} as { server: NatsServer; nc: NatsConnection };
  beforeAll(async () => {
    nats.server = await startNatsServer();
    nats.nc = await connect({ servers: nats.server.url });
  });
  afterAll(async () => {
    await nats.nc?.close();
    await stopAllNatsServers();
  });
  return nats;
}
