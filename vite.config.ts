import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: '.',
  server: { fs: { allow: ['.', '../shared'] } },
  test: {
    include: ['tests/**/*.test.ts'],
    setupFiles: ['tests/setup.ts'],
    // One software GPU: run files one after another, each in its own worker.
    fileParallelism: false,
    // A safety net against hangs only, never a speed check: a slow fresh machine (or one shared
    // with other work) must not fail a test that is merely slow. Browser waits budget themselves
    // from speeds measured in the same run (tests/browser-harness.ts).
    testTimeout: 1_200_000,
    hookTimeout: 1_200_000,
    reporters: ['default'],
  },
});
