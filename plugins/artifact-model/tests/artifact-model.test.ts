import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileSchema, runPipeline } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import FileProbePlugin from '@meshanics/probe-file';
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
