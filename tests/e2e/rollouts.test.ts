// Rollouts end to end with real processes on 127.0.0.1: the server binary, two real agent
// binaries and twenty simulated devices (each with its own certificate from `device
// issue-cert`, talking the real device API over mTLS with @meshanics/core's DeviceClient).
// A 3-wave rollout advances on its own, waits for `rollout approve` before its manual wave,
// halts on the first failure with max_failure_rate 0, resumes, and is aborted with revert,
// which puts the previous model back on the real agents' disks.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceClient } from '@meshanics/core';
import { getRollout, openDataDir, type MeshanicsContext } from '@meshanics/server';
import { serverCli, startAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { SimDevice, SIM_REGISTER_REQUEST } from './helpers/sim-device.js';
import { publishModel, rolloutCreateArgs, waitFor } from './helpers/steps.js';

const FLEET = 'e2e';
const SIMULATED = 20;
const AGENTS = ['agent-0', 'agent-1'];

let root: string;
let serverDir: string;
let readyFile: string;
let server: Child;
/** A read-only observer on the server's data dir, as any one-shot CLI command opens it. */
let observer: MeshanicsContext;
const agents: Child[] = [];
const sims = new Map<string, SimDevice>();
const v1 = randomBytes(64 * 1024);
const v2 = randomBytes(64 * 1024);
const liveModel = (agent: string) => path.join(root, 'agents', agent, 'artifacts', 'model', 'detector', 'model');

interface RolloutView {
  id: string;
  status: string;
  currentWave: number;
  acknowledgedFailures: number;
  halt: { wave: number; failures: number; tolerance: number; reason: string } | null;
  counts: Record<string, number>;
  waves: Array<{ index: number; status: string; devices: number; approval: string }>;
  devices: Array<{ name: string; wave: number; state: string; revert: { toVersion: string | null; state: string | null } | null }>;
}

// Polled in-process (the same function `rollout show` prints): a CLI process per poll would
// eat the CPU the server and agents need.
const show = async (id: string): Promise<RolloutView> => getRollout(observer, id);

async function publish(version: string, bytes: Buffer): Promise<void> {
  await publishModel(serverDir, root, { name: 'detector', version }, bytes);
}

async function createRollout(version: string, strategy?: unknown): Promise<RolloutView> {
  return serverCli(serverDir, rolloutCreateArgs({ fleet: FLEET, artifact: `detector@${version}`, group: 'everyone', readyFile, strategy }));
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-rollouts-'));
  serverDir = path.join(root, 'server');
  readyFile = path.join(root, 'ready');
  await writeFile(readyFile, 'ok');
  server = await startServer(serverDir);
  const names = [...AGENTS, ...Array.from({ length: SIMULATED }, (_, i) => `sim-${String(i).padStart(2, '0')}`)];
  // Every device gets its own key and certificate (one process for all of them).
  const issued = await serverCli(serverDir, ['device', 'issue-cert', '--fleet', FLEET, '--names', names.join(','), '--out', path.join(root, 'creds')]);
  expect(new Set(issued.devices.map((d: { serialNumber: string }) => d.serialNumber)).size).toBe(names.length);
  observer = await openDataDir({ dataDir: serverDir });
  for (const name of AGENTS) {
    await mkdir(path.join(root, 'agents', name), { recursive: true });
    agents.push(startAgent(server, path.join(root, 'creds', name), path.join(root, 'agents', name)));
  }
  for (const name of names.slice(AGENTS.length)) {
    const creds = path.join(root, 'creds', name);
    const client = new DeviceClient(
      server.grpc,
      {
        ca: await readFile(path.join(creds, 'ca.crt')),
        cert: await readFile(path.join(creds, 'device.crt')),
        key: await readFile(path.join(creds, 'device.key')),
      },
      { deadlineMs: 10_000 },
    );
    await client.register(SIM_REGISTER_REQUEST);
    const sim = new SimDevice(
      name,
      {
        heartbeat: async (installed) => (await client.heartbeat({ installed })).assignments,
        reportArtifactStatus: (report) => client.reportArtifactStatus(report),
        close: () => client.close(),
      },
      500,
    );
    sims.set(name, sim);
    sim.start();
  }
  await Promise.all(agents.map((a) => a.waitForLine((l: { msg?: string }) => l?.msg === 'registered')));
  const group = await serverCli(serverDir, ['group', 'create', '--fleet', FLEET, '--name', 'everyone', '--devices', [...names, 'not-a-device'].join(',')]);
  expect(group.devices).toHaveLength(22);
  expect(group.unresolved).toEqual(['not-a-device']);
  await publish('1.0.0', v1);
  await publish('2.0.0', v2);
}, 60_000);

afterAll(async () => {
  for (const s of sims.values()) s.stop();
  await Promise.all(agents.map((a) => a.stop()));
  await observer?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('rollouts over real processes', () => {
  it('installs 1.0.0 everywhere with the default strategy (one wave of 100%)', async () => {
    const r = await createRollout('1.0.0');
    expect(r.waves).toHaveLength(1);
    const done = await waitFor('the 1.0.0 rollout to complete', async () => {
      const d = await show(r.id);
      return d.status === 'completed' && d;
    });
    expect(done.counts.HEALTHY).toBe(22);
    for (const a of AGENTS) expect(await readFile(liveModel(a))).toEqual(v1);
  });

  it('rolls 2.0.0 out in 3 waves: auto, auto, manual; halts on the first failure; resumes; abort with revert puts 1.0.0 back', async () => {
    const r = await createRollout('2.0.0', {
      waves: [
        { percent: 10, approval: 'auto' },
        { percent: 50, approval: 'auto' },
        { percent: 100, approval: 'manual' },
      ],
      max_failure_rate: 0,
    });
    expect(r.waves.map((w) => [w.devices, w.approval])).toEqual([
      [3, 'auto'],
      [8, 'auto'],
      [11, 'manual'],
    ]);
    // Three simulated devices of the manual wave play special parts: one rolls back, one
    // only shows up while the rollout is halted, one never gets to it.
    const lastWaveSims = r.devices.filter((d) => d.wave === 2 && sims.has(d.name)).map((d) => sims.get(d.name)!);
    expect(lastWaveSims.length).toBeGreaterThanOrEqual(9);
    const [bad, late, never] = lastWaveSims as [SimDevice, SimDevice, SimDevice];
    for (const s of [bad, late, never]) s.held = true;
    bad.outcome = 'ROLLED_BACK';

    // Waves 0 and 1 advance on their own; the manual wave waits, serving nothing.
    const waiting = await waitFor('the manual wave to wait for approval', async () => {
      const d = await show(r.id);
      return d.status === 'waiting_approval' && d;
    });
    expect(waiting.currentWave).toBe(1);
    expect(waiting.waves.map((w) => w.status)).toEqual(['complete', 'complete', 'pending']);
    expect(waiting.counts).toMatchObject({ HEALTHY: 11, PENDING: 11 });
    expect((await late.heartbeat()).find((a) => a.version === '2.0.0')).toBeUndefined();

    const approved: RolloutView = await serverCli(serverDir, ['rollout', 'approve', r.id]);
    expect(approved).toMatchObject({ status: 'running', currentWave: 2 });
    // Everyone but the three held devices updates, the real agents included.
    await waitFor('the manual wave minus the held devices to be healthy', async () => {
      const d = await show(r.id);
      return d.counts.HEALTHY === 19 && d;
    });
    for (const a of AGENTS) expect(await readFile(liveModel(a))).toEqual(v2);

    // The first failure halts it, mid-wave.
    bad.held = false;
    const halted = await waitFor('the rollout to halt', async () => {
      const d = await show(r.id);
      return d.status === 'halted' && d;
    });
    expect(halted.halt).toMatchObject({ wave: 2, failures: 1, tolerance: 0 });
    expect(halted.counts).toMatchObject({ HEALTHY: 19, ROLLED_BACK: 1, PENDING: 2 });
    // A device that had not started gets no assignment while the rollout is halted.
    expect((await late.heartbeat()).find((a) => a.version === '2.0.0')).toBeUndefined();

    const resumed: RolloutView = await serverCli(serverDir, ['rollout', 'resume', r.id]);
    expect(resumed).toMatchObject({ status: 'running', acknowledgedFailures: 1, halt: null });
    late.held = false;
    await waitFor('the late device to be healthy after the resume', async () => {
      const d = await show(r.id);
      return d.devices.find((x) => x.name === late.name)?.state === 'HEALTHY' && d;
    });
    expect((await show(r.id)).status).toBe('running');

    // Abort with revert: every updated device is sent back to 1.0.0.
    const aborted: RolloutView = await serverCli(serverDir, ['rollout', 'abort', r.id, '--policy', 'revert']);
    expect(aborted.status).toBe('aborted');
    const reverted = aborted.devices.filter((d) => d.revert?.toVersion === '1.0.0').map((d) => d.name);
    expect(reverted).toHaveLength(20);
    expect(reverted).toEqual(expect.arrayContaining(AGENTS));
    expect(aborted.devices.find((d) => d.name === bad.name)).toMatchObject({ state: 'ROLLED_BACK', revert: null });
    never.held = false;
    await waitFor('the real agents to run 1.0.0 again', async () => {
      for (const a of AGENTS) if (!(await readFile(liveModel(a))).equals(v1)) return false;
      return true;
    });
    const final = await waitFor('every revert to be healthy', async () => {
      const d = await show(r.id);
      return d.devices.filter((x) => x.revert?.state === 'HEALTHY').length === 20 && d;
    });
    for (const a of AGENTS) expect(final.devices.find((d) => d.name === a)).toMatchObject({ state: 'HEALTHY', revert: { toVersion: '1.0.0', state: 'HEALTHY' } });
    // The device that never started was withdrawn, not reverted.
    expect(final.devices.find((d) => d.name === never.name)).toMatchObject({ state: 'PENDING', revert: null });
    expect((await never.heartbeat()).filter((a) => a.name === 'detector')).toEqual([]);

    // Every transition is in the audit trail, whose chain verifies.
    const verify = await serverCli(serverDir, ['audit', 'verify']);
    expect(verify).toMatchObject({ verified: true });
    const events = (await exportAudit()).filter((e) => e.subject === `rollout:${r.id}`);
    expect(events.map((e) => e.action)).toEqual([
      'rollout.created',
      'rollout.wave_started',
      'rollout.wave_started',
      'rollout.awaiting_approval',
      'rollout.approved',
      'rollout.wave_started',
      'rollout.halted',
      'rollout.resumed',
      'rollout.aborted',
    ]);
    expect(events.find((e) => e.action === 'rollout.halted')!.details).toMatchObject({ wave: 2, failures: 1, tolerance: 0 });
  });
});

async function exportAudit(): Promise<Array<{ subject: string; action: string; details: Record<string, unknown> }>> {
  const file = path.join(root, 'audit.ndjson');
  const result = await serverCli(serverDir, ['audit', 'export', '--out', file]);
  expect(result.chain.verified).toBe(true);
  const lines = (await readFile(file, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(lines.at(-1)).toMatchObject({ chain: { verified: true, count: lines.length - 1 } });
  return lines.slice(0, -1);
}
