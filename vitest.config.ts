import { defineConfig } from 'vitest/config';

// Integration tests start real servers (Postgres databases, NATS, uWebSockets.js apps);
// on a 2-core machine running files one at a time keeps timings and ports predictable.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'clients/typescript/test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
