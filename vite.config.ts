import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: '.',
  server: { fs: { allow: ['.', '../shared'] } },
  test: {
    include: ['tests/**/*.test.ts'],
    setupFiles: ['tests/setup.ts'],
    // One software GPU: run files one after another, each in its own worker.
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
