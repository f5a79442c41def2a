import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup/requireTs.ts'],
    globalSetup: ['test/setup/build.ts'],
    // Temporal-backed tests start real servers and workers: give them room on a busy 2-core machine
    // (a timeout bounds a hang; no test asserts speed).
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
