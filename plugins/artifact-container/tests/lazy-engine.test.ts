// dockerode is imported at the first use of the runtime, not when the agent loads its
// default plugins (docs/benchmarks.md: idle agent memory). Vitest runs each test file in a
// fresh process (pool: forks), so nothing else has loaded dockerode before this file.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { createTestAgent } from '@meshanics/core/testing';
import ContainerArtifactPlugin from '../src/index.js';
import { connectEngine } from '../src/engine.js';

const require = createRequire(import.meta.url);
const dockerodeLoaded = () => Object.keys(require.cache).some((f) => f.includes('/node_modules/dockerode/'));

describe('container engine loading', () => {
  it('loading and applying the plugin does not load dockerode; the first engine does', async () => {
    const plugin = new ContainerArtifactPlugin({ runtime: '/nonexistent/podman.sock' });
    const t = await createTestAgent([plugin]);
    expect(t.agent.capabilities()).toContainEqual({ kind: 'ARTIFACT', name: 'container', version: plugin.version });
    expect(dockerodeLoaded()).toBe(false);
    const engine = await connectEngine('/nonexistent/podman.sock', 1000);
    expect(dockerodeLoaded()).toBe(true);
    await expect(engine.ping()).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
