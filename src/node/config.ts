/**
 * Configuration: the one place that reads `process.env`. Every value is parsed and checked
 * once, at start; a bad value stops start-up with a message naming the variable. The rest of
 * the program receives the frozen `Config`.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import type { NatsAuth } from './cluster/index.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** `pretty`: one readable line per entry (for a terminal); `json`: one JSON object per line. */
export type LogFormat = 'pretty' | 'json';

export interface Config {
  readonly httpPort: number;
  readonly httpHost: string;
  /** Postgres URL; undefined means embedded PGlite under `dataDir`. */
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly natsUrl: string | undefined;
  /** How this node proves itself to NATS (NATS_USER…NATS_KEY); secrets, never logged. */
  readonly natsAuth: NatsAuth;
  readonly redisUrl: string | undefined;
  /** With REDIS_URL: how often changed actors are pushed to the replica, and the prefix of its keys. */
  readonly replicaIntervalMs: number;
  readonly redisPrefix: string;
  readonly nodeId: string;
  /** Cluster mode (NATS_URL set): how long a silent node keeps its shards, and how often a node renews. */
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly adminToken: string | undefined;
  readonly serviceToken: string | undefined;
  /** Undefined means: generated once and kept in `dataDir`. */
  readonly jwtSecret: string | undefined;
  /** The root of the API-key MAC and login-email keys; undefined: generated once into `dataDir`. */
  readonly keySecret: string | undefined;
  readonly flushIntervalMs: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /** One `request` line per HTTP request (TALLY_ACCESS_LOG), for this share of them (TALLY_ACCESS_LOG_SAMPLE, 0–1). */
  readonly accessLog: boolean;
  readonly accessLogSample: number;
  readonly sessionTtlMs: number;
  readonly actorIdleMs: number;
  readonly maxActors: number;
  /** Take the client address from the last hop of X-Forwarded-For (behind a load balancer). */
  readonly trustProxy: boolean;
  readonly shutdownTimeoutMs: number;
  /** How long a node keeps answering after SIGTERM with readiness failed, before it stops accepting. */
  readonly shutdownGraceMs: number;
  /** Cluster: how long SIGTERM waits for this node's shards to be handed to the others. */
  readonly drainTimeoutMs: number;
  /** Cluster: NATS API decisions (a batch counts each item) in flight at once; past it, 503. */
  readonly natsMaxInFlight: number;
  /** Usage history older than this many days is dropped, a whole month at a time. */
  readonly usageRetentionDays: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`${variable}: ${detail}`);
  }
}

type Env = Record<string, string | undefined>;

/**
 * Every variable, its default as an operator reads it, and what it does, in one line each:
 * `tally --help` prints this list and the README's configuration table is checked against it.
 */
export const ENVIRONMENT: readonly { name: string; default: string; meaning: string }[] = [
  { name: 'TALLY_HTTP_PORT', default: '8080', meaning: 'HTTP port' },
  { name: 'TALLY_HTTP_HOST', default: '0.0.0.0', meaning: 'HTTP bind address' },
  { name: 'DATABASE_URL', default: 'none: embedded PGlite', meaning: 'Postgres URL' },
  { name: 'TALLY_DATA_DIR', default: './data', meaning: 'embedded database and generated secrets' },
  {
    name: 'NATS_URL',
    default: 'none: a single node',
    meaning: 'NATS servers, comma-separated: cluster mode (needs DATABASE_URL, TALLY_NODE_ID and both secrets)',
  },
  { name: 'NATS_USER', default: 'none', meaning: 'NATS user name (with NATS_PASSWORD); for nodes, the TALLY account’s node user' },
  { name: 'NATS_PASSWORD', default: 'none', meaning: 'NATS password of NATS_USER' },
  { name: 'NATS_TOKEN', default: 'none', meaning: 'NATS token (instead of a user)' },
  { name: 'NATS_NKEY', default: 'none', meaning: 'file holding an NATS nkey seed (instead of a user)' },
  { name: 'NATS_CREDS', default: 'none', meaning: 'NATS creds file, JWT and seed (instead of a user)' },
  { name: 'NATS_CA', default: 'none', meaning: 'CA certificate file that signed the NATS servers’ certificates (TLS)' },
  { name: 'NATS_CERT', default: 'none', meaning: 'client certificate file for NATS (mutual TLS, with NATS_KEY)' },
  { name: 'NATS_KEY', default: 'none', meaning: 'private key file of NATS_CERT' },
  {
    name: 'REDIS_URL',
    default: 'none: no replica cache',
    meaning: 'Redis, the optional replica cache: a crash then loses about TALLY_REPLICA_INTERVAL_MS of usage',
  },
  { name: 'TALLY_REPLICA_INTERVAL_MS', default: '100', meaning: 'with REDIS_URL: how often changed quota state is pushed to Redis' },
  { name: 'TALLY_REDIS_PREFIX', default: 'tally:', meaning: 'with REDIS_URL: the prefix of every key Tally writes in Redis' },
  { name: 'TALLY_NODE_ID', default: 'generated (required with NATS_URL)', meaning: "this node's name, stable across restarts in a cluster" },
  { name: 'TALLY_LEASE_MS', default: '6000', meaning: 'cluster: a node silent this long loses its shards' },
  { name: 'TALLY_HEARTBEAT_MS', default: '1000', meaning: 'cluster: how often a node renews its lease (at most a third of it)' },
  { name: 'TALLY_DRAIN_TIMEOUT_MS', default: '30000', meaning: 'cluster: how long SIGTERM waits for this node’s shards to move to the others' },
  { name: 'TALLY_NATS_MAX_IN_FLIGHT', default: '10000', meaning: 'cluster: NATS API decisions in flight at once (a batch counts each item); past it, 503' },
  { name: 'TALLY_ADMIN_TOKEN', default: 'none: admin routes answer 403', meaning: 'bearer token for /v1/admin/* (>= 16 characters)' },
  {
    name: 'TALLY_SERVICE_TOKEN',
    default: 'none: /v1/limiter/check and /v1/service/* answer 403',
    meaning: 'bearer token for service routes (>= 16 characters)',
  },
  { name: 'TALLY_JWT_SECRET', default: 'generated once into TALLY_DATA_DIR', meaning: 'signs session tokens (>= 32 characters)' },
  {
    name: 'TALLY_KEY_SECRET',
    default: 'generated once into TALLY_DATA_DIR',
    meaning: 'MACs API keys and what nodes tell each other, hashes login emails (>= 32 characters)',
  },
  { name: 'TALLY_FLUSH_INTERVAL_MS', default: '1000', meaning: 'write-behind interval' },
  { name: 'TALLY_LOG_LEVEL', default: 'info', meaning: 'fatal, error, warn, info, debug, trace or silent' },
  { name: 'TALLY_LOG_FORMAT', default: 'pretty on a terminal, json otherwise', meaning: 'pretty or json' },
  { name: 'TALLY_ACCESS_LOG', default: 'false', meaning: 'one log line per HTTP request (1/true or 0/false)' },
  { name: 'TALLY_ACCESS_LOG_SAMPLE', default: '1', meaning: 'with TALLY_ACCESS_LOG: the share of requests logged, 0 to 1' },
  { name: 'TALLY_SESSION_TTL_MS', default: '30 days', meaning: 'lifetime of a session token' },
  { name: 'TALLY_ACTOR_IDLE_MS', default: '10 minutes', meaning: 'an actor unused this long is passivated' },
  { name: 'TALLY_USAGE_RETENTION_DAYS', default: '400', meaning: 'usage history is kept this many days (whole months: a month goes once it all is older)' },
  { name: 'TALLY_MAX_ACTORS', default: '500000', meaning: 'actors kept in memory before LRU eviction' },
  { name: 'TALLY_TRUST_PROXY', default: 'false', meaning: 'take the client address from the last X-Forwarded-For hop' },
  { name: 'TALLY_SHUTDOWN_TIMEOUT_MS', default: '10000', meaning: 'how long SIGTERM waits for in-flight requests' },
  {
    name: 'TALLY_SHUTDOWN_GRACE_MS',
    default: '2000',
    meaning: 'after SIGTERM: readiness fails at once, the node answers (Connection: close) this long, then stops accepting',
  },
];

/** Defaults, in one table, so the README and the code cannot disagree about them. */
export const CONFIG_DEFAULTS = {
  TALLY_HTTP_PORT: 8080,
  TALLY_HTTP_HOST: '0.0.0.0',
  TALLY_DATA_DIR: './data',
  TALLY_FLUSH_INTERVAL_MS: 1000,
  TALLY_REPLICA_INTERVAL_MS: 100,
  TALLY_REDIS_PREFIX: 'tally:',
  TALLY_LOG_LEVEL: 'info',
  TALLY_ACCESS_LOG: false,
  TALLY_ACCESS_LOG_SAMPLE: 1,
  TALLY_SESSION_TTL_MS: 30 * 24 * 3600 * 1000,
  TALLY_ACTOR_IDLE_MS: 10 * 60 * 1000,
  TALLY_MAX_ACTORS: 500_000,
  TALLY_TRUST_PROXY: false,
  TALLY_SHUTDOWN_TIMEOUT_MS: 10_000,
  TALLY_SHUTDOWN_GRACE_MS: 2000,
  TALLY_LEASE_MS: 6000,
  TALLY_HEARTBEAT_MS: 1000,
  TALLY_DRAIN_TIMEOUT_MS: 30_000,
  TALLY_NATS_MAX_IN_FLIGHT: 10_000,
  TALLY_USAGE_RETENTION_DAYS: 400,
} as const;

/**
 * `terminal`: whether the log goes to a terminal, which makes `pretty` the default format
 * (the caller knows; by default, whether standard output is a TTY).
 */
export function loadConfig(env: Env = process.env, options: { terminal?: boolean } = {}): Config {
  const terminal = options.terminal ?? process.stdout.isTTY === true;
  const read = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const int = (name: keyof typeof CONFIG_DEFAULTS, min: number, max: number): number => {
    const raw = read(name);
    if (raw === undefined) return CONFIG_DEFAULTS[name] as number;
    if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected an integer, got "${raw}"`);
    const value = Number(raw);
    if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
    return value;
  };
  const url = (name: string, protocols: string[]): string | undefined => {
    const raw = read(name);
    if (raw === undefined) return undefined;
    for (const part of raw.split(',')) {
      let parsed: URL;
      try {
        parsed = new URL(part.trim());
      } catch (_cause) {
        throw new ConfigError(name, `"${redactUrl(part)}" is not a URL`);
      }
      if (!protocols.includes(parsed.protocol)) {
        throw new ConfigError(name, `expected ${protocols.join(' or ')} URL, got "${parsed.protocol}"`);
      }
    }
    return raw;
  };
  const token = (name: string, minLength: number): string | undefined => {
    const raw = read(name);
    if (raw !== undefined && raw.length < minLength) {
      throw new ConfigError(name, `must be at least ${minLength} characters`);
    }
    return raw;
  };

  const logLevel = read('TALLY_LOG_LEVEL') ?? CONFIG_DEFAULTS.TALLY_LOG_LEVEL;
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError('TALLY_LOG_LEVEL', `unknown level "${logLevel}"`);
  }
  const logFormat = read('TALLY_LOG_FORMAT') ?? (terminal ? 'pretty' : 'json');
  if (logFormat !== 'pretty' && logFormat !== 'json') {
    throw new ConfigError('TALLY_LOG_FORMAT', `expected pretty or json, got "${logFormat}"`);
  }
  const trustProxy = read('TALLY_TRUST_PROXY') ?? 'false';
  if (trustProxy !== 'true' && trustProxy !== 'false') {
    throw new ConfigError('TALLY_TRUST_PROXY', `expected true or false, got "${trustProxy}"`);
  }
  const accessLog = read('TALLY_ACCESS_LOG') ?? '0';
  if (!['1', 'true', '0', 'false'].includes(accessLog)) {
    throw new ConfigError('TALLY_ACCESS_LOG', `expected 1, true, 0 or false, got "${accessLog}"`);
  }
  const accessLogSample = read('TALLY_ACCESS_LOG_SAMPLE') ?? String(CONFIG_DEFAULTS.TALLY_ACCESS_LOG_SAMPLE);
  if (!/^(\d+\.?\d*|\.\d+)$/.test(accessLogSample) || Number(accessLogSample) > 1) {
    throw new ConfigError('TALLY_ACCESS_LOG_SAMPLE', `expected a number from 0 to 1, got "${accessLogSample}"`);
  }
  const nodeId = read('TALLY_NODE_ID') ?? `node-${randomBytes(4).toString('hex')}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) {
    throw new ConfigError('TALLY_NODE_ID', 'use 1 to 64 letters, digits, "_" or "-" (it becomes a NATS subject token)');
  }
  const redisPrefix = read('TALLY_REDIS_PREFIX') ?? CONFIG_DEFAULTS.TALLY_REDIS_PREFIX;
  if (!/^[\x21-\x7e]{1,64}$/.test(redisPrefix)) {
    throw new ConfigError('TALLY_REDIS_PREFIX', 'use 1 to 64 printable ASCII characters, no spaces');
  }
  const natsUrl = url('NATS_URL', ['nats:', 'tls:', 'ws:', 'wss:']);
  const databaseUrl = url('DATABASE_URL', ['postgres:', 'postgresql:']);
  const leaseMs = int('TALLY_LEASE_MS', 300, 600_000);
  const heartbeatMs = int('TALLY_HEARTBEAT_MS', 50, 200_000);
  if (heartbeatMs * 3 > leaseMs) {
    throw new ConfigError('TALLY_HEARTBEAT_MS', `must be at most a third of TALLY_LEASE_MS (${leaseMs}), got ${heartbeatMs}`);
  }
  if (natsUrl !== undefined) {
    // Every node of a cluster shares one database, the same secrets, and a name of its own
    // that survives a restart (a restarted node waits out its previous lease under it).
    if (databaseUrl === undefined) {
      throw new ConfigError(
        'DATABASE_URL',
        'NATS_URL is set (cluster mode), which needs one PostgreSQL shared by every node: set DATABASE_URL (embedded PGlite serves a single node only)',
      );
    }
    for (const name of ['TALLY_NODE_ID', 'TALLY_JWT_SECRET', 'TALLY_KEY_SECRET']) {
      if (read(name) === undefined)
        throw new ConfigError(
          name,
          `NATS_URL is set (cluster mode): set ${name}${name === 'TALLY_NODE_ID' ? ', a stable name for this node' : ', the same on every node'}`,
        );
    }
  }

  return Object.freeze({
    httpPort: int('TALLY_HTTP_PORT', 0, 65535),
    httpHost: read('TALLY_HTTP_HOST') ?? CONFIG_DEFAULTS.TALLY_HTTP_HOST,
    databaseUrl,
    dataDir: read('TALLY_DATA_DIR') ?? CONFIG_DEFAULTS.TALLY_DATA_DIR,
    natsUrl,
    natsAuth: loadNatsAuth(env),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    replicaIntervalMs: int('TALLY_REPLICA_INTERVAL_MS', 10, 60_000),
    redisPrefix,
    nodeId,
    leaseMs,
    heartbeatMs,
    adminToken: token('TALLY_ADMIN_TOKEN', 16),
    serviceToken: token('TALLY_SERVICE_TOKEN', 16),
    jwtSecret: token('TALLY_JWT_SECRET', 32),
    keySecret: token('TALLY_KEY_SECRET', 32),
    flushIntervalMs: int('TALLY_FLUSH_INTERVAL_MS', 10, 60_000),
    logLevel: logLevel as LogLevel,
    logFormat,
    accessLog: accessLog === '1' || accessLog === 'true',
    accessLogSample: Number(accessLogSample),
    sessionTtlMs: int('TALLY_SESSION_TTL_MS', 60_000, 366 * 24 * 3600 * 1000),
    actorIdleMs: int('TALLY_ACTOR_IDLE_MS', 1000, 24 * 3600 * 1000),
    maxActors: int('TALLY_MAX_ACTORS', 100, 100_000_000),
    trustProxy: trustProxy === 'true',
    shutdownTimeoutMs: int('TALLY_SHUTDOWN_TIMEOUT_MS', 100, 600_000),
    shutdownGraceMs: int('TALLY_SHUTDOWN_GRACE_MS', 0, 600_000),
    drainTimeoutMs: int('TALLY_DRAIN_TIMEOUT_MS', 0, 3_600_000),
    natsMaxInFlight: int('TALLY_NATS_MAX_IN_FLIGHT', 1, 1_000_000),
    usageRetentionDays: int('TALLY_USAGE_RETENTION_DAYS', 1, 36_600),
  });
}

/**
 * NATS credentials, under the names the `nats` CLI uses: at most one way to authenticate
 * (a user and password, a token, an nkey seed file or a creds file), and TLS when a CA, or a
 * client certificate and its key, are given. Files must be readable now. For nodes and the
 * operator CLI alike.
 */
export function loadNatsAuth(env: Env = process.env): NatsAuth {
  const read = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const file = (name: string): string | undefined => {
    const path = read(name);
    if (path === undefined) return undefined;
    try {
      accessSync(path, constants.R_OK);
    } catch (_cause) {
      throw new ConfigError(name, `cannot read the file "${path}"`);
    }
    return path;
  };
  const user = read('NATS_USER');
  // A password is a secret: taken as given (spaces and all), never trimmed or echoed.
  const password = env.NATS_PASSWORD === undefined || env.NATS_PASSWORD === '' ? undefined : env.NATS_PASSWORD;
  if ((user === undefined) !== (password === undefined))
    throw new ConfigError(user === undefined ? 'NATS_USER' : 'NATS_PASSWORD', 'NATS_USER and NATS_PASSWORD go together');
  const token = read('NATS_TOKEN');
  const nkeyFile = file('NATS_NKEY');
  const credsFile = file('NATS_CREDS');
  const ways = [
    user === undefined ? null : 'NATS_USER',
    token === undefined ? null : 'NATS_TOKEN',
    nkeyFile === undefined ? null : 'NATS_NKEY',
    credsFile === undefined ? null : 'NATS_CREDS',
  ].filter((way) => way !== null);
  if (ways.length > 1) throw new ConfigError(ways[1]!, `set one way to authenticate to NATS, not ${ways.join(' and ')}`);
  const caFile = file('NATS_CA');
  const certFile = file('NATS_CERT');
  const keyFile = file('NATS_KEY');
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new ConfigError(certFile === undefined ? 'NATS_CERT' : 'NATS_KEY', 'NATS_CERT and NATS_KEY go together (mutual TLS)');
  const tls =
    caFile === undefined && certFile === undefined
      ? undefined
      : { ...(caFile === undefined ? {} : { caFile }), ...(certFile === undefined ? {} : { certFile, keyFile }) };
  return Object.freeze({
    ...(user === undefined || password === undefined ? {} : { user: { name: user, password } }),
    ...(token === undefined ? {} : { token }),
    ...(nkeyFile === undefined ? {} : { nkeyFile }),
    ...(credsFile === undefined ? {} : { credsFile }),
    ...(tls === undefined ? {} : { tls }),
  });
}

/** For messages: never echo credentials embedded in a URL (a password may itself hold `@`). */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.username === '' && url.password === '') return raw;
    url.username = '***';
    url.password = '';
    return url.toString();
  } catch {
    // Not a URL the WHATWG parser takes: hide whatever stands where credentials would.
    return raw.replace(/\/\/.*@/, '//***@');
  }
}
