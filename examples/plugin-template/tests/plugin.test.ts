import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runPipeline, type MeshanicsPlugin } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import ExampleArtifactPlugin, { ARTIFACT_KIND } from '../src/index.js';

// A probe plugin for the test only: healthy when the spec says so.
const fakeProbe: MeshanicsPlugin = {
  name: 'TestProbe',
  version: '0.0.0',
  coreApi: '^0.1.0',
  provides: { probeType: 'test' },
  specSchema: { type: 'object', properties: { healthy: { type: 'boolean' } } },
  apply(agent) {
    agent.hooks.probe.for('test').tapPromise('TestProbe', async (ctx) => ({
      healthy: Boolean((ctx.spec as { healthy?: boolean }).healthy),
      detail: 'test probe',
    }));
  },
};

describe('example artifact plugin', () => {
  it('swaps the file in and rolls back when the probe fails', async () => {
    const { agent, source, dataDir } = await createTestAgent([new ExampleArtifactPlugin(), fakeProbe]);
    const live = path.join(dataDir, 'artifacts', ARTIFACT_KIND, 'thing', 'thing.bin');
    const v1 = await source.publish('thing/1/thing.bin', 'one');
    const ok = testAssignment(v1, {
      kind: ARTIFACT_KIND,
      name: 'thing',
      specJson: '{"fileName":"thing.bin"}',
      probe: { type: 'test', specJson: '{"healthy":true}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(agent, ok, new AbortController().signal)).toBe('HEALTHY');
    const v2 = await source.publish('thing/2/thing.bin', 'two');
    const bad = testAssignment(v2, {
      kind: ARTIFACT_KIND,
      name: 'thing',
      specJson: '{"fileName":"thing.bin"}',
      probe: { type: 'test', specJson: '{"healthy":false}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(agent, bad, new AbortController().signal)).toBe('ROLLED_BACK');
    expect(await readFile(live, 'utf8')).toBe('one');
  });

  it('fails an artifact over maxBytes with the vendor error code in the reason, nothing changed', async () => {
    const { agent, source, dataDir } = await createTestAgent([new ExampleArtifactPlugin({ maxBytes: 3 }), fakeProbe]);
    const reasons: string[] = [];
    agent.hooks.transition.tapPromise('Test', async (event) => void reasons.push(event.reason));
    const big = await source.publish('thing/3/thing.bin', 'four');
    const assignment = testAssignment(big, {
      kind: ARTIFACT_KIND,
      name: 'thing',
      specJson: '{"fileName":"thing.bin"}',
      probe: { type: 'test', specJson: '{"healthy":true}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(agent, assignment, new AbortController().signal)).toBe('FAILED');
    expect(reasons.at(-1)).toMatch(/MESH_ERR_X_[A-Z0-9]+_TOO_LARGE: 4 bytes is more than maxBytes 3/);
    await expect(readFile(path.join(dataDir, 'artifacts', ARTIFACT_KIND, 'thing', 'thing.bin'))).rejects.toThrow(/ENOENT/);
  });
});
