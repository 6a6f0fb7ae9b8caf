// examples/firmware-ab through core's real pipeline (createTestAgent, real files and links):
// HEALTHY on the inactive slot, the vendor's own error code in the FAILED reason, a rollback
// that flips the link back, and the slotDir option held to the device allowlist.
import { mkdtemp, readFile, readlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runPipeline, type Agent, type MeshanicsPlugin } from '@meshanics/core';
import { createTestAgent, testAssignment, type LocalTargetSource } from '@meshanics/core/testing';
import FirmwareAbPlugin, { ARTIFACT_KIND } from '../../examples/firmware-ab/src/index.js';

const probe: MeshanicsPlugin = {
  name: 'TestProbe',
  version: '0.0.0',
  coreApi: '^0.1.0',
  provides: { probeType: 'test' },
  specSchema: { type: 'object' },
  apply(agent) {
    agent.hooks.probe.for('test').tapPromise('TestProbe', async (ctx) => ({ healthy: Boolean((ctx.spec as { healthy?: boolean }).healthy), detail: 'test' }));
  },
};

async function deploy(agent: Agent, source: LocalTargetSource, version: string, image: string, healthy = true) {
  const reasons: string[] = [];
  agent.hooks.transition.tapPromise(`t-${version}`, async (e) => void reasons.push(e.reason));
  const target = await source.publish(`fw/${version}`, Buffer.from(image, 'latin1'));
  const assignment = testAssignment(target, {
    kind: ARTIFACT_KIND,
    name: 'board',
    version,
    specJson: JSON.stringify({ magic: 'fa57' }),
    probe: { type: 'test', specJson: JSON.stringify({ healthy }), timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
  });
  return { outcome: await runPipeline(agent, assignment, new AbortController().signal), reason: reasons.at(-1) ?? '' };
}

describe('examples/firmware-ab', () => {
  it('goes live on the inactive slot, refuses a bad image with its own code, and flips back when the probe fails', async () => {
    const { agent, source, dataDir } = await createTestAgent([new FirmwareAbPlugin(), probe]);
    const link = path.join(dataDir, 'artifacts', ARTIFACT_KIND, 'board', 'current');
    expect((await deploy(agent, source, '1', '\xfa\x57 one')).outcome).toBe('HEALTHY');
    expect(await readlink(link)).toBe('slot-a');
    expect((await deploy(agent, source, '2', '\xfa\x57 two')).outcome).toBe('HEALTHY');
    expect(await readlink(link)).toBe('slot-b');
    const bad = await deploy(agent, source, '3', 'MZ not ours');
    expect(bad.outcome).toBe('FAILED');
    expect(bad.reason).toContain('MESH_ERR_X_VENDOR_BAD_MAGIC: image starts with 4d5a, not fa57');
    expect(await readlink(link)).toBe('slot-b');
    expect((await deploy(agent, source, '4', '\xfa\x57 four', false)).outcome).toBe('ROLLED_BACK');
    expect(await readlink(link)).toBe('slot-b');
    expect(await readFile(link, 'latin1')).toBe('\xfa\x57 two');
  });

  it('holds the slotDir option to allowlist.writePaths', async () => {
    const slotDir = await mkdtemp(path.join(os.tmpdir(), 'meshanics-slots-'));
    const denied = await createTestAgent([new FirmwareAbPlugin({ slotDir }), probe]);
    const refused = await deploy(denied.agent, denied.source, '1', '\xfa\x57 one');
    expect(refused.outcome).toBe('FAILED');
    expect(refused.reason).toContain('MESH_ERR_ALLOWLIST_DENIED');
    const allowed = await createTestAgent([new FirmwareAbPlugin({ slotDir }), probe], { allowlist: { writePaths: [slotDir] } });
    expect((await deploy(allowed.agent, allowed.source, '1', '\xfa\x57 one')).outcome).toBe('HEALTHY');
    expect(await readlink(path.join(slotDir, 'board', 'current'))).toBe('slot-a');
  });
});
