// @peculiar/x509 is imported at the first CSR (enrollment, renewal), and tuf-js at the first
// TUF resolution, not when the agent's command line starts (docs/benchmarks.md: idle agent
// memory, issue #9). Vitest runs each test file in a fresh process (pool: forks), so nothing
// else has loaded them before this file.
import { promises as fs } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const loaded = (pkg: string) => Object.keys(require.cache).some((f) => f.includes(`/node_modules/${pkg}/`));
const x509Loaded = () => loaded('@peculiar/x509');

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

describe('TUF client modules', () => {
  it('tuf-js and @tufjs/models are loaded by the first resolve, not by the agent CLI or a new target source', async () => {
    await import('../src/cli/agent-cli.js');
    await import('../src/index.js');
    const { TufTargetSource } = await import('../src/tuf/tuf-target-source.js');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-lazy-tuf-'));
    try {
      const pinnedRootFile = path.join(dir, 'pinned-root.json');
      await fs.writeFile(pinnedRootFile, '{}');
      const agent = new https.Agent();
      const source = await TufTargetSource.create({
        metadataDir: path.join(dir, 'tuf'),
        pinnedRootFile,
        // Nothing listens on port 1; the pinned root is not even TUF: resolving fails, after
        // tuf-js is in.
        artifactServer: 'https://127.0.0.1:1',
        httpsAgent: agent,
        fetchTimeoutMs: 2000,
      });
      source.useHttpsAgent(agent);
      expect(loaded('tuf-js')).toBe(false);
      expect(loaded('@tufjs/models')).toBe(false);
      await expect(source.resolve('app/1.0.0/app.bin')).rejects.toThrow();
      expect(loaded('tuf-js')).toBe(true);
      expect(loaded('@tufjs/models')).toBe(true);
      agent.destroy();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
