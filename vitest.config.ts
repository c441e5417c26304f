import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    fileParallelism: true,
    // One test file at a time: several files spawn multi-process gateways with timed load (rate limits
    // over 5 s of autocannon); two at once on a 2-core machine skewed those timings (697 of 600 admitted).
    maxWorkers: 1,
    env: { MERIDIAN_LOG_LEVEL: 'warn' },
  },
});
