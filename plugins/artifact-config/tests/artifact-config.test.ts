import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileSchema, runPipeline, type TransitionEvent } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import FileProbePlugin from '@meshanics/probe-file';
import ConfigArtifactPlugin, { CONFIG_SPEC_SCHEMA } from '../src/index.js';

let root: string;
let etc: string;
let ready: string;
let reloadLog: string;
let reload: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-config-'));
  etc = path.join(root, 'etc', 'app');
  await mkdir(etc, { recursive: true });
  ready = path.join(root, 'ready');
  await writeFile(ready, 'yes');
  reloadLog = path.join(root, 'reloads.log');
  // A reload that fails whenever the live config says "broken", like a daemon refusing a bad file.
  reload = path.join(root, 'reload.sh');
  await writeFile(reload, `#!/bin/sh\necho "$1" >> ${reloadLog}\nif grep -q broken "$1"; then echo "config rejected" >&2; exit 1; fi\n`);
  await chmod(reload, 0o755);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function setup() {
  const test = await createTestAgent([new ConfigArtifactPlugin(), new FileProbePlugin()], {
    dataDir: path.join(root, 'agent'),
    allowlist: { writePaths: [path.join(root, 'etc')], execBinaries: [reload] },
  });
  const events: TransitionEvent[] = [];
  test.agent.hooks.transition.tap('test', (e) => {
    events.push(e);
  });
  return { ...test, events };
}

async function deploy(t: Awaited<ReturnType<typeof setup>>, content: string, spec: Record<string, unknown>, version = `v${Math.random()}`) {
  const target = await t.source.publish(`app-conf/${version}/app.conf`, content);
  const a = testAssignment(target, {
    kind: 'config',
    name: 'app-conf',
    version,
    specJson: JSON.stringify(spec),
    probe: { type: 'file', specJson: JSON.stringify({ path: ready }), timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
  });
  const state = await runPipeline(t.agent, a, new AbortController().signal);
  return { state, reason: t.events.at(-1)?.reason ?? '' };
}

describe('config artifact', () => {
  it('places the file with its mode and runs the allowlisted reload', async () => {
    const t = await setup();
    const dest = path.join(etc, 'app.conf');
    const r = await deploy(t, 'port=1\n', { destination: dest, mode: '0640', reload: { exec: [reload, dest] } });
    expect(r.state).toBe('HEALTHY');
    expect(await readFile(dest, 'utf8')).toBe('port=1\n');
    expect((await stat(dest)).mode & 0o777).toBe(0o640);
    expect(await readFile(reloadLog, 'utf8')).toBe(`${dest}\n`);
  });

  it('rolls back when the reload fails, leaving the old file byte-identical and reloaded again', async () => {
    const t = await setup();
    const dest = path.join(etc, 'app.conf');
    const spec = { destination: dest, mode: '0644', reload: { exec: [reload, dest] } };
    expect((await deploy(t, 'port=1\n', spec)).state).toBe('HEALTHY');
    const before = await readFile(dest);
    const r = await deploy(t, 'port=broken\n', spec);
    expect(r.state).toBe('ROLLED_BACK');
    expect(r.reason).toContain('MESH_ERR_RELOAD_FAILED');
    expect(r.reason).toContain('config rejected');
    expect(r.reason).toContain('previous version restored');
    expect(await readFile(dest)).toEqual(before);
    expect((await readFile(reloadLog, 'utf8')).trim().split('\n')).toHaveLength(3);
    expect((await readdir(etc)).filter((n) => n.includes('incoming') || n.includes('.tmp-'))).toEqual([]);
  });

  it('removes the file again when a first install fails its reload', async () => {
    const t = await setup();
    const dest = path.join(etc, 'new.conf');
    const r = await deploy(t, 'broken\n', { destination: dest, mode: '0644', reload: { exec: [reload, dest] } });
    expect(r.state).toBe('ROLLED_BACK');
    await expect(stat(dest)).rejects.toThrow(/ENOENT/);
  });

  it('refuses a destination outside the allowlisted write paths, changing nothing', async () => {
    const t = await setup();
    const outside = path.join(root, 'elsewhere', 'app.conf');
    const r = await deploy(t, 'x\n', { destination: outside, mode: '0644' });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('is not under an allowlisted write path (allowlist.writePaths');
    await expect(stat(path.dirname(outside))).rejects.toThrow(/ENOENT/);
  });

  it('refuses a symlink escape from an allowlisted prefix', async () => {
    const t = await setup();
    const outside = path.join(root, 'outside');
    await mkdir(outside);
    await symlink(outside, path.join(etc, 'link'));
    const r = await deploy(t, 'x\n', { destination: path.join(etc, 'link', 'app.conf'), mode: '0644' });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('escapes the allowlisted write paths through a symlink');
    expect(await readdir(outside)).toEqual([]);
  });

  it('refuses a reload binary that is not on the allowlist before touching the file', async () => {
    const t = await setup();
    const dest = path.join(etc, 'app.conf');
    await writeFile(dest, 'original\n');
    const r = await deploy(t, 'x\n', { destination: dest, mode: '0644', reload: { exec: ['/bin/sh', '-c', 'reboot'] } });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('binary "/bin/sh" is not on the allowlist (allowlist.execBinaries)');
    expect(await readFile(dest, 'utf8')).toBe('original\n');
    // Refused at validation (the validate hook), before the target was even resolved.
    expect(t.events.map((e) => e.state)).toEqual(['FAILED']);
    expect(t.source.resolved).toEqual([]);
    expect(await readdir(etc)).toEqual(['app.conf']);
  });

  it('refuses a systemd unit that is not on the allowlist', async () => {
    const t = await setup();
    const r = await deploy(t, 'x\n', { destination: path.join(etc, 'a.conf'), mode: '0644', reload: { systemdUnit: 'sshd.service' } });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('systemd unit "sshd.service" is not on the allowlist (allowlist.systemdUnits)');
    expect(t.source.resolved).toEqual([]);
  });

  it('rejects "../" traversal, relative paths and bad modes at schema validation, with path and rule', async () => {
    const validate = compileSchema(CONFIG_SPEC_SCHEMA, 'spec');
    const traversal = validate({ destination: '/etc/app/../shadow', mode: '0644' });
    expect(traversal.ok).toBe(false);
    expect(!traversal.ok && traversal.errors[0]).toMatch(/^spec\/destination must match pattern/);
    expect(validate({ destination: 'etc/app.conf', mode: '0644' }).ok).toBe(false);
    expect(validate({ destination: '/etc/app/', mode: '0644' }).ok).toBe(false);
    const mode = validate({ destination: '/etc/app.conf', mode: '777777' });
    expect(!mode.ok && mode.errors[0]).toBe('spec/mode must match pattern "^0?[0-7]{3}$"');
    expect(validate({ destination: '/etc/app.conf', mode: '0644', reload: 'none' }).ok).toBe(true);
    expect(validate({ destination: '/etc/app.conf', mode: '0644', reload: { exec: ['relative'] } }).ok).toBe(false);
    // And the device refuses a traversal even if a server let it through.
    const t = await setup();
    const r = await deploy(t, 'x\n', { destination: `${etc}/../app/../../escape.conf`, mode: '0644' });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('spec/destination must match pattern');
  });
});
