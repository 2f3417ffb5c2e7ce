import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_DEFAULTS, ConfigError, ENVIRONMENT, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ httpPort: 8080, httpHost: '0.0.0.0', dataDir: './data', flushIntervalMs: 1000, databaseUrl: undefined, natsUrl: undefined });
    expect(config.nodeId).toMatch(/^node-[0-9a-f]{8}$/);
    expect(config).toMatchObject({ redisUrl: undefined, replicaIntervalMs: 100, redisPrefix: 'tally:' });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it.each([
    ['TALLY_HTTP_PORT', 'eighty'],
    ['TALLY_HTTP_PORT', '70000'],
    ['TALLY_FLUSH_INTERVAL_MS', '-5'],
    ['DATABASE_URL', 'mysql://localhost/x'],
    ['NATS_URL', 'not a url'],
    ['TALLY_ADMIN_TOKEN', 'short'],
    ['TALLY_JWT_SECRET', 'too-short'],
    ['TALLY_NODE_ID', 'has spaces'],
    ['TALLY_LOG_LEVEL', 'loud'],
    ['TALLY_TRUST_PROXY', 'yes'],
    ['TALLY_LOG_FORMAT', 'xml'],
    ['REDIS_URL', 'http://localhost:6379'],
    ['TALLY_REPLICA_INTERVAL_MS', '5'],
    ['TALLY_REPLICA_INTERVAL_MS', 'often'],
    ['TALLY_REDIS_PREFIX', 'has space:'],
    ['TALLY_ACCESS_LOG', 'yes'],
    ['TALLY_ACCESS_LOG', 'TRUE'],
    ['TALLY_ACCESS_LOG', '2'],
    ['TALLY_ACCESS_LOG_SAMPLE', '1.5'],
    ['TALLY_ACCESS_LOG_SAMPLE', '-0.1'],
    ['TALLY_ACCESS_LOG_SAMPLE', 'half'],
    ['TALLY_ACCESS_LOG_SAMPLE', '1e-2'],
    ['TALLY_ACCESS_LOG_SAMPLE', 'NaN'],
  ])('stops on a bad %s and names it', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [variable]: value })).toThrow(new RegExp(`^${variable}:`));
  });

  describe('cluster mode (NATS_URL set)', () => {
    const cluster = {
      NATS_URL: 'nats://127.0.0.1:4222',
      DATABASE_URL: 'postgres://db/tally',
      TALLY_NODE_ID: 'node-a',
      TALLY_JWT_SECRET: 'j'.repeat(32),
      TALLY_KEY_SECRET: 'k'.repeat(32),
    };

    it('takes the lease and heartbeat, 6 s and 1 s by default', () => {
      expect(loadConfig(cluster)).toMatchObject({ natsUrl: cluster.NATS_URL, nodeId: 'node-a', leaseMs: 6000, heartbeatMs: 1000 });
      expect(loadConfig({ ...cluster, TALLY_LEASE_MS: '900', TALLY_HEARTBEAT_MS: '300' })).toMatchObject({ leaseMs: 900, heartbeatMs: 300 });
    });

    it.each(['DATABASE_URL', 'TALLY_NODE_ID', 'TALLY_JWT_SECRET', 'TALLY_KEY_SECRET'])('needs %s, and says why', (variable) => {
      expect(() => loadConfig({ ...cluster, [variable]: '' })).toThrow(new RegExp(`^${variable}: NATS_URL is set \\(cluster mode\\)`));
    });

    it('refuses a heartbeat longer than a third of the lease', () => {
      expect(() => loadConfig({ ...cluster, TALLY_LEASE_MS: '3000', TALLY_HEARTBEAT_MS: '1001' })).toThrow(
        /^TALLY_HEARTBEAT_MS: must be at most a third of TALLY_LEASE_MS/,
      );
    });
  });

  describe('NATS credentials', () => {
    const file = (name: string) => {
      const path = join(mkdtempSync(join(tmpdir(), 'tally-config-')), name);
      writeFileSync(path, 'SUAFAKESEED\n');
      return path;
    };

    it('takes one way to authenticate, and TLS files, under the names the nats CLI uses', () => {
      expect(loadConfig({}).natsAuth).toEqual({});
      expect(loadConfig({ NATS_USER: 'tally-node', NATS_PASSWORD: ' p@ss word ' }).natsAuth).toEqual({ user: { name: 'tally-node', password: ' p@ss word ' } });
      expect(loadConfig({ NATS_TOKEN: 'secret-token' }).natsAuth).toEqual({ token: 'secret-token' });
      const seed = file('seed.nk');
      expect(loadConfig({ NATS_NKEY: seed }).natsAuth).toEqual({ nkeyFile: seed });
      const [ca, cert, key] = [file('ca.pem'), file('cert.pem'), file('key.pem')];
      expect(loadConfig({ NATS_CA: ca }).natsAuth).toEqual({ tls: { caFile: ca } });
      expect(loadConfig({ NATS_CA: ca, NATS_CERT: cert, NATS_KEY: key }).natsAuth).toEqual({ tls: { caFile: ca, certFile: cert, keyFile: key } });
    });

    it.each([
      [{ NATS_USER: 'tally-node' }, 'NATS_PASSWORD', 'go together'],
      [{ NATS_PASSWORD: 'hunter2-secret' }, 'NATS_USER', 'go together'],
      [{ NATS_USER: 'u', NATS_PASSWORD: 'hunter2-secret', NATS_TOKEN: 'tok-secret' }, 'NATS_TOKEN', 'one way to authenticate'],
      [{ NATS_CREDS: '/nonexistent/tally.creds' }, 'NATS_CREDS', 'cannot read the file'],
      [{ NATS_CERT: '/etc/hostname' }, 'NATS_KEY', 'go together'],
    ])('refuses %o, naming %s, and echoes no secret', (env, variable, reason) => {
      let thrown: unknown;
      try {
        loadConfig(env);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      expect((thrown as ConfigError).variable).toBe(variable);
      expect((thrown as Error).message).toContain(reason);
      expect((thrown as Error).message).not.toMatch(/hunter2|tok-secret/);
    });
  });

  it('never echoes a password from a bad URL', () => {
    let message = '';
    try {
      loadConfig({ DATABASE_URL: 'postgres://user:hunter2@[bad' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^DATABASE_URL: /);
    expect(message).not.toContain('hunter2');
  });

  it('keeps the access log off unless told, logging every request by default once on', () => {
    expect(loadConfig({})).toMatchObject({ accessLog: false, accessLogSample: 1 });
    for (const on of ['1', 'true', ' true ']) expect(loadConfig({ TALLY_ACCESS_LOG: on }).accessLog).toBe(true);
    for (const off of ['0', 'false', '']) expect(loadConfig({ TALLY_ACCESS_LOG: off }).accessLog).toBe(false);
    for (const [raw, share] of [
      ['0', 0],
      ['0.25', 0.25],
      ['.5', 0.5],
      ['1', 1],
      ['1.0', 1],
    ] as const)
      expect(loadConfig({ TALLY_ACCESS_LOG: '1', TALLY_ACCESS_LOG_SAMPLE: raw }).accessLogSample).toBe(share);
    expect(() => loadConfig({ TALLY_ACCESS_LOG_SAMPLE: '2' })).toThrow('TALLY_ACCESS_LOG_SAMPLE: expected a number from 0 to 1, got "2"');
    expect(() => loadConfig({ TALLY_ACCESS_LOG: 'on' })).toThrow('TALLY_ACCESS_LOG: expected 1, true, 0 or false, got "on"');
  });

  it('logs pretty to a terminal and JSON elsewhere, unless told', () => {
    expect(loadConfig({}, { terminal: true }).logFormat).toBe('pretty');
    expect(loadConfig({}, { terminal: false }).logFormat).toBe('json');
    expect(loadConfig({ TALLY_LOG_FORMAT: 'json' }, { terminal: true }).logFormat).toBe('json');
    expect(loadConfig({ TALLY_LOG_FORMAT: 'pretty' }, { terminal: false }).logFormat).toBe('pretty');
  });
});

describe('the documented configuration', () => {
  const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
  /** The first column of each row of the first table after `heading`. */
  const tableRows = (text: string, heading: string) => {
    const rest = text.slice(text.indexOf(heading));
    return rest
      .slice(0, rest.indexOf('\n\n', rest.indexOf('| ---')))
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((line) => line.split('|').map((cell) => cell.trim().replaceAll('`', '')));
  };

  it('README lists every variable with the default and meaning `tally --help` prints', () => {
    const rows = tableRows(read('README.md'), '## Configuration').map(([, name, fallback, meaning]) => ({ name, default: fallback, meaning }));
    expect(rows).toEqual(ENVIRONMENT.map((variable) => ({ ...variable })));
  });

  it('docs/configuration.md describes every variable, and only those', () => {
    const names = tableRows(read('docs/configuration.md'), '| variable').map(([, name]) => name);
    expect(names).toEqual(ENVIRONMENT.map((variable) => variable.name));
  });

  it('lists the defaults the code applies', () => {
    const listed = Object.fromEntries(ENVIRONMENT.map((variable) => [variable.name, variable.default]));
    const written: Record<string, string> = { TALLY_SESSION_TTL_MS: '30 days', TALLY_ACTOR_IDLE_MS: '10 minutes' };
    for (const [name, value] of Object.entries(CONFIG_DEFAULTS)) expect(listed[name], name).toBe(written[name] ?? String(value));
    expect(CONFIG_DEFAULTS.TALLY_SESSION_TTL_MS).toBe(30 * 24 * 3600 * 1000);
    expect(CONFIG_DEFAULTS.TALLY_ACTOR_IDLE_MS).toBe(10 * 60 * 1000);
  });

  it('every variable the code reads is listed', () => {
    const source = read('src/node/config.ts');
    const readNames = [...source.matchAll(/(?:read|int|url|token|file)\('([A-Z_]+)'|env\.([A-Z_]+)/g)].map((m) => (m[1] ?? m[2])!);
    expect(new Set(readNames)).toEqual(new Set(ENVIRONMENT.map((variable) => variable.name)));
  });
});
