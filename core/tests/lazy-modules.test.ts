// @peculiar/x509 is imported at the first CSR (enrollment, renewal), not when the agent's
// command line starts (docs/benchmarks.md: idle agent memory). Vitest runs each test file
// in a fresh process (pool: forks), so nothing else has loaded it before this file.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const x509Loaded = () => Object.keys(require.cache).some((f) => f.includes('/node_modules/@peculiar/x509/'));

describe('agent start-up modules', () => {
  it('the agent CLI (run and enroll commands) does not load @peculiar/x509 until a CSR is made', async () => {
    await import('../src/cli/agent-cli.js');
    await import('../src/identity/renewal.js');
    expect(x509Loaded()).toBe(false);
    const { generateKeyAndCsr } = await import('../src/identity/csr.js');
    const { csrPem, privateKeyPem } = await generateKeyAndCsr('device-1');
    expect(x509Loaded()).toBe(true);
    expect(csrPem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);
    expect(privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // Two CSRs share the one loaded module and make distinct keys.
    const second = await generateKeyAndCsr('device-1');
    expect(second.privateKeyPem).not.toBe(privateKeyPem);
  });
});
