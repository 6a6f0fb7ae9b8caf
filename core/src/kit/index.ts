// @meshanics/core/kit: the plugin kit alone (durable files, the atomic swap, allowlist checks,
// allowlisted binaries, an abortable sleep), for code that is not an agent: the server imports
// its file primitives from here. Importing it loads no agent runtime (no hooks, gRPC, TUF
// client or logger); core/tests/kit-atomic-file.test.ts holds that.
export * from './atomic-file.js';
export * from './atomic-swap.js';
export * from './allowlist.js';
export * from './run-binary.js';
export * from './sleep.js';
