/**
 * Redis for tests: the local server (REDIS_URL, default redis://127.0.0.1:6379) under a key
 * prefix of the test's own, whose keys are deleted afterwards; or a private redis-server on
 * a free port, in its own process group, for a test that stops and starts Redis.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { freePort } from './children.js';
import { waitFor } from './wait.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix no other run uses, and a client to look at (and clear) what is under it. */
export function redisPrefix(): { prefix: string; redis: Redis; clear(): Promise<void> } {
  const prefix = `tally-test:${process.pid}-${randomBytes(4).toString('hex')}:`;
  const redis = new Redis(REDIS_URL);
  return {
    prefix,
    redis,
    async clear() {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    },
  };
}

/** A redis-server of the test's own: nothing kept on disk; `stop` and `start` it at will on one port. */
export class PrivateRedis {
  private child: ChildProcess | null = null;

  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateRedis> {
    const server = new PrivateRedis(await freePort());
    await server.start();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ['--bind', '127.0.0.1', '--port', String(this.port), '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'];
    const child = spawn('redis-server', args, {
      detached: true,
      stdio: 'ignore',
    });
    this.child = child;
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {});
    try {
      await waitFor(async () => {
        try {
          if (probe.status !== 'ready') await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          probe.disconnect();
          return false;
        }
      }, 10_000);
    } finally {
      probe.disconnect();
    }
  }

  /** Makes the server answer nothing for `seconds` (DEBUG SLEEP), as a stalled Redis would. */
  async stall(seconds: number): Promise<void> {
    const client = new Redis(this.url, { maxRetriesPerRequest: 0 });
    try {
      await client.call('DEBUG', 'SLEEP', String(seconds));
    } finally {
      client.disconnect();
    }
  }

  /** Kills the server (its process group) and waits until it has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      return;
    }
    await exited;
  }
}
