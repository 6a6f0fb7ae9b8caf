import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runPipeline, type MeshanicsPlugin } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import ExampleArtifactPlugin from '../src/index.js';

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
    const live = path.join(dataDir, 'artifacts', 'example', 'thing', 'thing.bin');
    const v1 = await source.publish('thing/1/thing.bin', 'one');
    const ok = testAssignment(v1, {
      kind: 'example', name: 'thing', specJson: '{"fileName":"thing.bin"}',
      probe: { type: 'test', specJson: '{"healthy":true}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(agent, ok, new AbortController().signal)).toBe('HEALTHY');
    const v2 = await source.publish('thing/2/thing.bin', 'two');
    const bad = testAssignment(v2, {
      kind: 'example', name: 'thing', specJson: '{"fileName":"thing.bin"}',
      probe: { type: 'test', specJson: '{"healthy":false}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(agent, bad, new AbortController().signal)).toBe('ROLLED_BACK');
    expect(await readFile(live, 'utf8')).toBe('one');
  });
});
