import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileSchema, runPipeline, type TransitionEvent } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import ExecProbePlugin from '@meshanics/probe-exec';
import FileProbePlugin from '@meshanics/probe-file';
import HttpProbePlugin from '@meshanics/probe-http';
import ModelArtifactPlugin, { MODEL_SPEC_SCHEMA, liveModelPath } from '../src/index.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-model-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function setup() {
  return createTestAgent([new ModelArtifactPlugin(), new FileProbePlugin()], { dataDir: path.join(root, 'agent') });
}

async function deploy(t: Awaited<ReturnType<typeof setup>>, version: string, bytes: string, readyFile: string, spec = {}) {
  const target = await t.source.publish(`resnet/${version}/resnet.onnx`, bytes);
  const a = testAssignment(target, {
    kind: 'model',
    name: 'resnet',
    version,
    specJson: JSON.stringify(spec),
    probe: { type: 'file', specJson: JSON.stringify({ path: readyFile }), timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
  });
  return runPipeline(t.agent, a, new AbortController().signal);
}

describe('model artifact', () => {
  it('puts the model live under artifacts/model/<name>/ and keeps the previous version beside it', async () => {
    const t = await setup();
    const ready = path.join(root, 'ready');
    await writeFile(ready, 'ok');
    expect(await deploy(t, '1', 'weights-1', ready, { fileName: 'resnet.onnx' })).toBe('HEALTHY');
    expect(await deploy(t, '2', 'weights-2', ready, { fileName: 'resnet.onnx' })).toBe('HEALTHY');
    const live = liveModelPath(t.dataDir, 'resnet', { fileName: 'resnet.onnx' });
    expect(live).toBe(path.join(t.dataDir, 'artifacts', 'model', 'resnet', 'resnet.onnx'));
    expect(await readFile(live, 'utf8')).toBe('weights-2');
    expect(await readFile(path.join(path.dirname(live), '.resnet.onnx.previous'), 'utf8')).toBe('weights-1');
    expect((await stat(live)).mode & 0o777).toBe(0o644);
    expect((await readdir(path.dirname(live))).sort()).toEqual(['.resnet.onnx.previous', 'resnet.onnx']);
    expect(await readdir(path.join(t.dataDir, 'staging'))).toEqual([]);
  });

  it('rolls back with one rename when the new version never becomes ready', async () => {
    const t = await setup();
    const ready = path.join(root, 'ready');
    await writeFile(ready, 'ok');
    expect(await deploy(t, '1', 'weights-1', ready)).toBe('HEALTHY');
    const live = liveModelPath(t.dataDir, 'resnet', {});
    const inodeBefore = (await stat(live)).ino;
    expect(await deploy(t, '2', 'weights-2', path.join(root, 'never'))).toBe('ROLLED_BACK');
    expect(await readFile(live, 'utf8')).toBe('weights-1');
    // The very same file is back (renamed, not copied).
    expect((await stat(live)).ino).toBe(inodeBefore);
    expect(t.agent.state.current.installed.resnet?.version).toBe('1');
  });

  it('removes the model when a first install fails its probe', async () => {
    const t = await setup();
    expect(await deploy(t, '1', 'weights-1', path.join(root, 'never'))).toBe('ROLLED_BACK');
    await expect(stat(liveModelPath(t.dataDir, 'resnet', {}))).rejects.toThrow(/ENOENT/);
  });

  it('cleans temp files a crash left beside the live file', async () => {
    const t = await setup();
    const dir = path.join(t.dataDir, 'artifacts', 'model', 'resnet');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, '.model.incoming-0123456789ab'), 'half');
    const ready = path.join(root, 'ready');
    await writeFile(ready, 'ok');
    expect(await deploy(t, '1', 'weights-1', ready)).toBe('HEALTHY');
    expect(await readdir(dir)).toEqual(['model']);
  });

  it('accepts only plain file names', () => {
    const validate = compileSchema(MODEL_SPEC_SCHEMA, 'spec');
    expect(validate({ fileName: 'resnet.onnx' }).ok).toBe(true);
    for (const bad of ['../x', 'a/b', '.hidden', '..', '']) expect(validate({ fileName: bad }).ok).toBe(false);
  });
});

// The spec: "the device re-validates every instruction it receives". A probe the device's
// allowlist forbids is refused at validation, before the target is fetched: the assignment
// ends FAILED and the live model is the one it was (not swapped and swapped back).
describe('model assigned with a probe the allowlist forbids', () => {
  async function setupWithProbes() {
    const t = await createTestAgent([new ModelArtifactPlugin(), new FileProbePlugin(), new ExecProbePlugin(), new HttpProbePlugin()], {
      dataDir: path.join(root, 'agent'),
      allowlist: { execBinaries: [] },
    });
    const events: TransitionEvent[] = [];
    t.agent.hooks.transition.tap('test', (e) => {
      events.push(e);
    });
    const ready = path.join(root, 'ready');
    await writeFile(ready, 'ok');
    expect(await deploy(t, '1', 'weights-1', ready)).toBe('HEALTHY');
    return { ...t, events };
  }

  async function deployWithProbe(t: Awaited<ReturnType<typeof setupWithProbes>>, probe: { type: string; spec: unknown }) {
    const target = await t.source.publish('resnet/2/resnet.onnx', 'weights-2');
    const a = testAssignment(target, {
      kind: 'model',
      name: 'resnet',
      version: '2',
      specJson: '{}',
      probe: { type: probe.type, specJson: JSON.stringify(probe.spec), timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    const resolvedBefore = t.source.resolved.length;
    const from = t.events.length;
    const state = await runPipeline(t.agent, a, new AbortController().signal);
    return { state, events: t.events.slice(from), fetched: t.source.resolved.slice(resolvedBefore) };
  }

  async function expectNothingChanged(t: Awaited<ReturnType<typeof setupWithProbes>>, inodeBefore: number) {
    const live = liveModelPath(t.dataDir, 'resnet', {});
    expect(await readFile(live, 'utf8')).toBe('weights-1');
    expect((await stat(live)).ino).toBe(inodeBefore);
    expect(await readdir(path.dirname(live))).toEqual(['model']);
    expect(await readdir(path.join(t.dataDir, 'staging'))).toEqual([]);
    expect(t.agent.state.current.installed.resnet?.version).toBe('1');
  }

  it('an exec probe whose binary is not in allowlist.execBinaries ends FAILED before anything is fetched', async () => {
    const t = await setupWithProbes();
    const inode = (await stat(liveModelPath(t.dataDir, 'resnet', {}))).ino;
    const r = await deployWithProbe(t, { type: 'exec', spec: { argv: ['/bin/true'] } });
    expect(r.state).toBe('FAILED');
    expect(r.events.map((e) => e.state)).toEqual(['FAILED']);
    expect(r.events[0]!.reason).toBe('MESH_ERR_ALLOWLIST_DENIED: binary "/bin/true" is not on the allowlist (allowlist.execBinaries)');
    expect(r.fetched).toEqual([]);
    await expectNothingChanged(t, inode);
  });

  it('an http probe whose host is not in allowlist.httpHosts ends FAILED before anything is fetched', async () => {
    const t = await setupWithProbes();
    const inode = (await stat(liveModelPath(t.dataDir, 'resnet', {}))).ino;
    const r = await deployWithProbe(t, { type: 'http', spec: { url: 'http://192.0.2.10:8080/health' } });
    expect(r.state).toBe('FAILED');
    expect(r.events.map((e) => e.state)).toEqual(['FAILED']);
    expect(r.events[0]!.reason).toBe('MESH_ERR_ALLOWLIST_DENIED: host "192.0.2.10" is not on the allowlist (allowlist.httpHosts)');
    expect(r.fetched).toEqual([]);
    await expectNothingChanged(t, inode);
  });
});
