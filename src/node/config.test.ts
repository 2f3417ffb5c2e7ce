import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ httpPort: 8080, httpHost: '0.0.0.0', dataDir: './data', flushIntervalMs: 1000, databaseUrl: undefined, natsUrl: undefined });
    expect(config.nodeId).toMatch(/^node-[0-9a-f]{8}$/);
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
  ])('stops on a bad %s and names it', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [variable]: value })).toThrow(new RegExp(`^${variable}:`));
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
});
