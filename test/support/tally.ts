/**
 * Starts a real Tally node for a test: in this process (fast, for route tests) on a fresh
 * Postgres database or a fresh PGlite directory, with test tokens and a fast flush.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { createLogger, loadConfig, TallyNode } from '../../src/node/index.js';
import { type Api, apiClient } from './http.js';
import { createTestDatabase } from './postgres.js';
import { makeTempDir } from './tmp.js';

export type Backend = 'postgres' | 'pglite';

export interface TestNode {
  node: TallyNode;
  api: Api;
  baseUrl: string;
  adminToken: string;
  serviceToken: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

export interface TestNodeOptions {
  backend?: Backend;
  env?: Record<string, string>;
  /** Keep the seeded `anonymous` tier (by default it is raised so tests may register freely). */
  keepAnonymousLimits?: boolean;
  /** Reuse an existing database (a restart test). */
  databaseUrl?: string;
  dataDir?: string;
  /** The node's "now" for requests (a test's simulated clock); default Date.now. */
  clock?: () => number;
}

export async function startTestNode(
  options: TestNodeOptions = {},
): Promise<TestNode & { databaseUrl?: string; dataDir: string; dropDatabase(): Promise<void> }> {
  const backend = options.backend ?? 'postgres';
  const adminToken = `admin-${randomBytes(12).toString('hex')}`;
  const serviceToken = `service-${randomBytes(12).toString('hex')}`;
  const dataDir = options.dataDir ?? (await makeTempDir());
  let databaseUrl = options.databaseUrl;
  let drop = async () => {};
  if (backend === 'postgres' && databaseUrl === undefined) {
    const database = await createTestDatabase();
    databaseUrl = database.url;
    drop = database.drop;
  }
  const env: Record<string, string> = {
    TALLY_HTTP_PORT: '0',
    TALLY_HTTP_HOST: '127.0.0.1',
    TALLY_DATA_DIR: dataDir,
    TALLY_ADMIN_TOKEN: adminToken,
    TALLY_SERVICE_TOKEN: serviceToken,
    TALLY_FLUSH_INTERVAL_MS: '100',
    TALLY_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...(databaseUrl === undefined ? {} : { DATABASE_URL: databaseUrl }),
    ...options.env,
  };
  const config = loadConfig(env);
  const node = new TallyNode(
    config,
    createLogger({ level: config.logLevel, format: config.logFormat, nodeId: config.nodeId }),
    options.clock === undefined ? {} : { clock: options.clock },
  );
  await node.start();
  const baseUrl = `http://127.0.0.1:${node.port}`;
  if (options.keepAnonymousLimits !== true) {
    const raised = await apiClient(baseUrl)('PUT', '/v1/admin/tiers/anonymous', {
      token: adminToken,
      body: { limits: [{ name: 'requests', kind: 'rate', limit: 1_000_000, period_ms: 60_000, burst: 100_000 }] },
    });
    if (raised.status !== 200) throw new Error(`raising the anonymous tier failed: ${raised.text}`);
  }
  const result = {
    node,
    api: apiClient(baseUrl),
    baseUrl,
    adminToken,
    serviceToken,
    env,
    dataDir,
    stop: () => node.stop(),
    dropDatabase: drop,
  };
  return databaseUrl === undefined ? result : { ...result, databaseUrl };
}

export interface TestUser {
  id: string;
  email: string;
  password: string;
  token: string;
  sessionId: string;
}

let counter = 0;

/** Registers a user and logs in once. */
export async function createUser(api: Api, options: { tier?: string; adminToken?: string; device?: { name?: string; type?: string } } = {}): Promise<TestUser> {
  const email = `user${process.pid}-${Date.now()}-${counter++}@example.com`;
  const password = `password-${randomBytes(6).toString('hex')}`;
  const registration = await api('POST', '/v1/users', {
    body: { email, password, name: 'Test User', ...(options.tier === undefined ? {} : { tier: options.tier }) },
    ...(options.adminToken === undefined ? {} : { token: options.adminToken }),
  });
  if (registration.status !== 201) throw new Error(`register failed: ${registration.status} ${registration.text}`);
  const login = await api('POST', '/v1/sessions', {
    body: { email, password, ...(options.device === undefined ? {} : { device: options.device }) },
    ...(options.adminToken === undefined ? {} : { token: options.adminToken }),
  });
  if (login.status !== 201) throw new Error(`login failed: ${login.status} ${login.text}`);
  return { id: registration.body.id, email, password, token: login.body.token, sessionId: login.body.session.id };
}

export async function createKey(api: Api, user: TestUser, body: Record<string, unknown> = {}): Promise<{ id: string; key: string }> {
  const created = await api('POST', '/v1/keys', { token: user.token, body });
  if (created.status !== 201) throw new Error(`key failed: ${created.status} ${created.text}`);
  return { id: created.body.id, key: created.body.key };
}

export type StartedNode = Awaited<ReturnType<typeof startTestNode>>;

/**
 * Starts one node for the whole test file and stops it (dropping its database) after.
 * Returns an accessor, since the node exists only once `beforeAll` has run.
 */
export function useTestNode(options: TestNodeOptions = {}): () => StartedNode {
  let started: StartedNode | undefined;
  beforeAll(async () => {
    started = await startTestNode(options);
  });
  afterAll(async () => {
    await started?.stop();
    await started?.dropDatabase();
  });
  return () => {
    if (started === undefined) throw new Error('the test node is not started yet');
    return started;
  };
}

/** Units of the `tokens` budget a user has used, read with `token` (a session token or key). */
export async function tokensUsed(api: Api, token: string): Promise<number> {
  const quota = await api('GET', '/v1/quota', { token });
  if (quota.status !== 200) throw new Error(`GET /v1/quota answered ${quota.status}: ${quota.text}`);
  const tokens = (quota.body.limits as { name: string; limit: number; remaining: number }[]).find((limit) => limit.name === 'tokens')!;
  return tokens.limit - tokens.remaining;
}
