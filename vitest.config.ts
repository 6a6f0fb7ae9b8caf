import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['core/tests/**/*.test.ts', 'plugins/*/tests/**/*.test.ts', 'server/tests/**/*.test.ts', 'tests/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    // Real processes, real TLS and real files: give slow machines room, but bound everything.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
