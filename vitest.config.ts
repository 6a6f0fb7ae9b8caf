import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['core/tests/**/*.test.ts', 'plugins/*/tests/**/*.test.ts', 'server/tests/**/*.test.ts', 'tests/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    // Real processes, real TLS and real files: give slow machines room, but bound everything.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Vitest's default is one file at a time on two cores (cores - 1), and most of a file's time
    // here is waiting on real processes, containers and timers: two at a time took the suite
    // from 20 to 9 minutes on a 2-core machine with every test passing.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    reporters: ['default'],
  },
});
