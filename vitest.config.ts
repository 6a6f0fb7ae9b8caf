import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

const ALL = ['core/tests/**/*.test.ts', 'plugins/*/tests/**/*.test.ts', 'server/tests/**/*.test.ts', 'tests/**/*.test.ts'];
// Booted systemd roots, qemu and image builds in podman, with deadlines measured in the
// container: they run after the rest, one file at a time (the systemd unit's rollback test once
// saw its container answer nothing while another file shared the cores).
const ALONE = ['tests/packaging/**/*.test.ts', 'tests/image/**/*.test.ts'];

export default defineConfig({
  test: {
    exclude: ['**/node_modules/**', '**/dist/**'],
    // Real processes, real TLS and real files: give slow machines room, but bound everything.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
    projects: [
      {
        extends: true,
        // Vitest's default is one file at a time on two cores (cores - 1), and most of a file's
        // time here is waiting on real processes, containers and timers: two at a time took the
        // suite from 20 to 9 minutes on a 2-core machine.
        test: {
          name: 'shared',
          include: ALL,
          exclude: [...ALONE, '**/node_modules/**', '**/dist/**'],
          maxWorkers: Math.max(2, availableParallelism() - 1),
          sequence: { groupOrder: 0 },
        },
      },
      { extends: true, test: { name: 'alone', include: ALONE, maxWorkers: 1, sequence: { groupOrder: 1 } } },
    ],
  },
});
