import { describe, expect, it } from 'vitest';
import { Agent, AgentStateStore, MeshError, type MeshanicsPlugin } from '../src/index.js';
import { LocalTargetSource } from '../src/testing/index.js';
import { FakeFileArtifactPlugin, FakeProbePlugin } from './fixtures/fake-plugins.mjs';
import { tempDir } from './helpers.js';

async function newAgent() {
  const dataDir = await tempDir('agent');
  return new Agent({ dataDir, targetSource: new LocalTargetSource(dataDir), state: await AgentStateStore.open(dataDir) });
}

describe('Agent', () => {
  it('refuses a plugin that does not declare, or does not support, this core API', async () => {
    const agent = await newAgent();
    const base = { name: 'v', version: '2.0.0', provides: { probeType: 'v' }, specSchema: { type: 'object' }, apply() {} };
    expect(() => agent.use(base as unknown as MeshanicsPlugin)).toThrow(/must declare the core API range it supports/);
    expect(() => agent.use({ ...base, coreApi: '^1.0.0' })).toThrow('plugin v 2.0.0 supports core API ^1.0.0, but this agent offers 0.1.0');
    expect(() => agent.use({ ...base, coreApi: '>=0.1.0 <2' })).not.toThrow();
  });

  it('declares its hooks once in a frozen table', async () => {
    const agent = await newAgent();
    expect(Object.isFrozen(agent.hooks)).toBe(true);
    expect(Object.keys(agent.hooks).sort()).toEqual(['apply', 'cleanup', 'download', 'probe', 'rollback', 'transition', 'validate', 'validateProbe', 'verify']);
    expect(() => {
      (agent.hooks as unknown as Record<string, unknown>).extra = 1;
    }).toThrow(TypeError);
  });

  it('advertises what its plugins provide', async () => {
    const agent = await newAgent();
    agent.use(new FakeFileArtifactPlugin()).use(new FakeProbePlugin());
    expect(agent.capabilities()).toEqual([
      { kind: 'ARTIFACT', name: 'fake', version: '0.0.1' },
      { kind: 'PROBE', name: 'fake-probe', version: '0.0.1' },
    ]);
  });

  it('refuses two plugins for the same kind and a plugin that provides nothing', async () => {
    const agent = await newAgent();
    agent.use(new FakeFileArtifactPlugin());
    expect(() => agent.use(new FakeFileArtifactPlugin())).toThrow(/both provide "fake"/);
    const nothing = { name: 'x', version: '1', coreApi: '^0.1.0', provides: {}, specSchema: {}, apply() {} } as unknown as MeshanicsPlugin;
    expect(() => agent.use(nothing)).toThrow(MeshError);
    const badSchema = { name: 'y', version: '1', coreApi: '^0.1.0', provides: { probeType: 'y' }, specSchema: { type: 'nonsense' }, apply() {} };
    expect(() => agent.use(badSchema)).toThrow(/invalid specSchema/);
  });
});
