// The agent plugin against real tarballs, real files and real symlinks; the hand-over itself
// (a process exit) is replaced by a callback here and proven with real processes in
// tests/e2e/agent-self-update.test.ts.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Reconciler, readSelfUpdateMarker, runPipeline, settleSelfUpdate, writeSelfUpdateMarker, type TransitionEvent } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import ExecProbePlugin from '@meshanics/probe-exec';
import AgentArtifactPlugin from '../src/index.js';
import { arm, checkOnce } from '../src/watchdog.js';
import { buildAgentTarball, writeAgentTree, writeArm64ElfHeader } from './helpers/agent-tarball.js';

let work: string;
let lib: string;
const A = '1.0.0';

beforeEach(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-agent-plugin-'));
  lib = await writeAgentTree(path.join(work, 'device'), { version: A });
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function setup(running = A) {
  let handedOver = 0;
  let onHandOver = () => undefined as void;
  const plugin = new AgentArtifactPlugin({
    root: lib,
    runningVersion: running,
    watchdog: false,
    handOver: () => {
      handedOver += 1;
      onHandOver();
    },
  });
  const test = await createTestAgent([plugin, new ExecProbePlugin()], { dataDir: path.join(work, 'data'), allowlist: { execBinaries: ['/bin/true'] } });
  const events: TransitionEvent[] = [];
  test.agent.hooks.transition.tap('test', (e) => void events.push(e));
  // The apply hook never returns after a hand-over (the process exits there): wait for either.
  const run = (a: Parameters<typeof runPipeline>[1]) =>
    Promise.race([runPipeline(test.agent, a, new AbortController().signal), new Promise<'APPLYING'>((resolve) => (onHandOver = () => resolve('APPLYING')))]);
  return { ...test, events, run, handedOver: () => handedOver };
}

async function deploy(
  t: Awaited<ReturnType<typeof setup>>,
  version: string,
  spec: Record<string, unknown>,
  tarball: Parameters<typeof buildAgentTarball>[0] = { version, out: '' },
) {
  const out = path.join(work, `agent-${version}-${Math.random()}.tar.gz`);
  await buildAgentTarball({ ...tarball, version: tarball.version, out });
  const target = await t.source.publish(`meshanics-agent/${version}/agent.tar.gz`, await readFile(out));
  const a = testAssignment(target, {
    kind: 'agent',
    name: 'meshanics-agent',
    version,
    specJson: JSON.stringify(spec),
    probe: { type: 'exec', specJson: JSON.stringify({ argv: ['/bin/true'] }), timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
  });
  const state = await t.run(a);
  return { a, state, reason: t.events.at(-1)?.reason ?? '' };
}

describe('agent artifact: install and switch', () => {
  it('installs B beside A, switches previous and current, writes the marker and hands over', async () => {
    await mkdir(path.join(lib, 'versions', '0.9.0')); // an older leftover: at most two versions stay
    const t = await setup();
    const r = await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 5 });
    expect(t.handedOver()).toBe(1);
    expect(r.state).toBe('APPLYING'); // the pipeline's HEALTHY comes from B, not A
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.1.0');
    expect(await readlink(path.join(lib, 'previous'))).toBe('versions/1.0.0');
    expect((await readdir(path.join(lib, 'versions'))).sort()).toEqual(['1.0.0', '1.1.0']);
    const core = JSON.parse(await readFile(path.join(lib, 'current/node_modules/@meshanics/core/package.json'), 'utf8'));
    expect(core.version).toBe('1.1.0');
    const marker = await readSelfUpdateMarker(t.dataDir);
    expect(marker).toMatchObject({ from: A, to: '1.1.0', root: lib, healthDeadlineSeconds: 5, createdTo: true });
    expect(Date.parse(marker!.deadline) - Date.parse(marker!.handedOverAt)).toBe(5000);
    expect(t.agent.state.current.inflight['meshanics-agent']).toBeUndefined();
    expect(t.events.map((e) => e.state)).toEqual(['DOWNLOADING', 'DOWNLOADING', 'VERIFYING', 'APPLYING']);
  });

  it('refuses a package whose version is not the artifact version, changing nothing', async () => {
    const t = await setup();
    const r = await deploy(t, '1.1.0', { architecture: process.arch }, { version: '1.1.0', out: '', coreVersion: '1.2.0' });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain("MESH_ERR_AGENT_UPDATE_REFUSED: the package's directory says version 1.1.0 but its core package.json says 1.2.0");
    const wrongDir = await deploy(t, '1.3.0', { architecture: process.arch }, { version: '1.4.0', out: '' });
    expect(wrongDir.state).toBe('FAILED');
    expect(wrongDir.reason).toContain('the package is agent 1.4.0 but the artifact version is 1.3.0');
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.0.0');
    expect(await readdir(path.join(lib, 'versions'))).toEqual(['1.0.0']);
    expect(await readSelfUpdateMarker(t.dataDir)).toBeUndefined();
  });

  it('refuses an assignment for another architecture and a package whose node is built for another one', async () => {
    const t = await setup();
    const other = process.arch === 'arm64' ? 'x64' : 'arm64';
    const r = await deploy(t, '1.1.0', { architecture: other });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain(`the assignment is for ${other} but this device is ${process.arch}`);
    if (process.arch === 'x64') {
      const elf = path.join(work, 'arm64-node');
      await writeArm64ElfHeader(elf);
      const r2 = await deploy(t, '1.2.0', { architecture: 'x64' }, { version: '1.2.0', out: '', node: { file: elf } });
      expect(r2.state).toBe('FAILED');
      expect(r2.reason).toContain("the package's bin/node is built for arm64 but the spec says x64");
    }
    expect(await readdir(path.join(lib, 'versions'))).toEqual(['1.0.0']);
  });

  it('refuses a downgrade unless the assignment allows it', async () => {
    const t = await setup();
    const r = await deploy(t, '0.9.0', { architecture: process.arch });
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('agent 0.9.0 is older than the running 1.0.0; set allowDowngrade in the spec to go back');
    const allowed = await deploy(t, '0.9.0', { architecture: process.arch, allowDowngrade: true });
    expect(allowed.state).toBe('APPLYING');
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/0.9.0');
  });
});

describe('agent artifact: what the next start does with the marker', () => {
  it('B within its deadline reports HEALTHY after the first answered heartbeat and clears the marker', async () => {
    const t = await setup();
    const r = await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 30 });
    const b = await setup('1.1.0'); // the same data dir, as the new version sees it
    let exited: number | undefined;
    const trial = await settleSelfUpdate(b.agent, '1.1.0', (code) => void (exited = code));
    expect(trial).toBeDefined();
    await trial!.confirmHealthy();
    expect(exited).toBeUndefined();
    expect(b.events.at(-1)).toMatchObject({ state: 'HEALTHY' });
    expect(b.agent.state.current.installed['meshanics-agent']).toMatchObject({ version: '1.1.0', kind: 'agent', assignmentId: r.a.assignmentId });
    expect(await readSelfUpdateMarker(t.dataDir)).toBeUndefined();
  });

  it('B killed after its confirmation but before its HEALTHY report: the next start of B reports HEALTHY once and records B', async () => {
    const t = await setup();
    const r = await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 30 });
    // What confirmHealthy leaves when the process dies right after its first write.
    const marker = (await readSelfUpdateMarker(t.dataDir))!;
    await writeSelfUpdateMarker(t.dataDir, { ...marker, confirmedAt: new Date().toISOString() });
    const b = await setup('1.1.0');
    expect(await settleSelfUpdate(b.agent, '1.1.0', () => undefined)).toBeUndefined();
    expect(b.events.map((e) => e.state)).toEqual(['HEALTHY']);
    expect(b.agent.state.current.installed['meshanics-agent']).toMatchObject({ version: '1.1.0', kind: 'agent', assignmentId: r.a.assignmentId });
    expect(await readSelfUpdateMarker(t.dataDir)).toBeUndefined();
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.1.0');
  });

  it('no pipeline starts for the assignment while B is on trial, also past its deadline: it ends ROLLED_BACK, never FAILED', async () => {
    const t = await setup();
    const r = await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 1 });
    const b = await setup('1.1.0');
    let handBack!: (code: number) => void;
    const exited = new Promise<number>((resolve) => (handBack = resolve));
    const trial = (await settleSelfUpdate(b.agent, '1.1.0', (code) => handBack(code)))!;
    // The server keeps assigning it; B's reconciler is the daemon's, with the trial's hold.
    const reconciler = new Reconciler(b.agent, { isHeld: trial.holds });
    await reconciler.reconcile([r.a]);
    expect(reconciler.busy).toBe(false);
    expect(await exited).toBe(75); // the deadline passed without a heartbeat
    await trial.confirmHealthy(); // a heartbeat answered too late confirms nothing
    await reconciler.reconcile([r.a]);
    expect(reconciler.busy).toBe(false);
    expect(b.events).toEqual([]);
    const a = await setup(A);
    await settleSelfUpdate(a.agent, A, () => undefined);
    expect(a.events.map((e) => e.state)).toEqual(['ROLLED_BACK']);
  });

  it('B after its deadline hands back; A then ends the assignment ROLLED_BACK once and removes B', async () => {
    const t = await setup();
    await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    const b = await setup('1.1.0');
    let exited: number | undefined;
    expect(await settleSelfUpdate(b.agent, '1.1.0', (code) => void (exited = code))).toBeUndefined();
    expect(exited).toBe(75);
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.0.0');
    const a = await setup(A);
    expect(await settleSelfUpdate(a.agent, A, () => undefined)).toBeUndefined();
    expect(a.events.map((e) => e.state)).toEqual(['ROLLED_BACK']);
    expect(a.events[0]!.reason).toContain('MESH_ERR_AGENT_HANDOVER: agent 1.1.0 did not register and heartbeat within 1 s');
    expect(await readdir(path.join(lib, 'versions'))).toEqual(['1.0.0']);
    expect(await readSelfUpdateMarker(t.dataDir)).toBeUndefined();
    const outbox = a.agent.state.current.outbox.filter((r) => r.state === 'ROLLED_BACK');
    expect(outbox).toHaveLength(1);
  });

  it("the after-exit check (systemd's ExecStopPost) records B's exit codes and rolls back once the deadline passed", async () => {
    const t = await setup();
    await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 1 });
    const log = () => undefined;
    await checkOnce(t.dataDir, '1', log);
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.1.0'); // before the deadline: B may still make it
    await new Promise((r) => setTimeout(r, 1100));
    await checkOnce(t.dataDir, '1', log);
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.0.0');
    const a = await setup(A);
    await settleSelfUpdate(a.agent, A, () => undefined);
    expect(a.events.map((e) => e.state)).toEqual(['ROLLED_BACK']);
    expect(a.events[0]!.reason).toContain('exit codes of 2 start(s) of the new agent: 1, 1');
  });

  it("the before-start check (systemd's ExecStartPre) watches B's start and kills a B that hangs before core at the deadline", async () => {
    const t = await setup();
    await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 4 }); // room for node's start-up on a loaded machine
    // The unit runs the previous version's built watchdog.js with node; so does this test.
    const script = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'watchdog.js');
    const armed = spawn(process.execPath, [script, '--arm', t.dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    armed.stdout.on('data', (d: Buffer) => (out += d.toString()));
    expect(await new Promise((r) => armed.on('exit', r))).toBe(0); // returns at once: systemd starts B after it
    expect(out).toContain('watching the start of 1.1.0');
    // B as systemd would start it: its own node from versions/1.1.0, hanging before any of core runs.
    const b = spawn(path.join(lib, 'versions', '1.1.0', 'bin', 'node'), ['-e', 'setInterval(() => {}, 60_000)'], { stdio: 'ignore' });
    const ended = await new Promise<string | null>((r) => b.on('exit', (_code, signal) => r(signal)));
    expect(ended).toBe('SIGKILL');
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.0.0');
    expect((await readSelfUpdateMarker(t.dataDir))?.rolledBack?.reason).toContain('did not register and heartbeat within 4 s');
  }, 20_000);

  it('the before-start check past the deadline decides the rollback itself, so that start runs A', async () => {
    const t = await setup();
    await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    const lines: string[] = [];
    await arm(t.dataDir, undefined, (l) => void lines.push(l));
    expect(lines).toEqual(['rolled back to 1.0.0 before the start: past the deadline']);
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.0.0');
    await arm(t.dataDir, undefined, (l) => void lines.push(l)); // rolled back already: nothing more to do
    expect(lines).toHaveLength(1);
  });

  it('B that runs but gets no heartbeat answered hands back by its own timer at the deadline', async () => {
    const t = await setup();
    await deploy(t, '1.1.0', { architecture: process.arch, healthDeadlineSeconds: 1 });
    const b = await setup('1.1.0');
    const exited = new Promise<number>((resolve) => void settleSelfUpdate(b.agent, '1.1.0', resolve));
    expect(await exited).toBe(75);
    expect(await readlink(path.join(lib, 'current'))).toBe('versions/1.0.0');
    expect((await readSelfUpdateMarker(t.dataDir))?.rolledBack?.reason).toContain('did not register and heartbeat within 1 s');
  });
});
