// Groups and rollouts against a real server: real SQLite, the real device gRPC API over
// mTLS, simulated devices that heartbeat and report like agents do.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { decommissionDevice } from '../src/fleet/devices.js';
import { httpStatusFor, MeshError } from '../src/errors.js';
import { createGroup, getGroup, listGroups, setGroupDevices } from '../src/fleet/groups.js';
import { driveRollouts } from '../src/rollouts/engine.js';
import { abortRollout, approveRollout, createRollout, getRollout, listRollouts, resumeRollout, type CreateRolloutInput } from '../src/rollouts/service.js';
import { verifyAudit } from '../src/audit/trail.js';
import { DeviceClient, provision, startTestServer, tempDir, type TestServer } from './helpers.js';

let t: TestServer;
const clients: DeviceClient[] = [];
const ACTOR = 'operator:test';

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await t.close();
});

interface WireAssignment {
  assignmentId: string;
  rolloutId: string;
  name: string;
  version: string;
}

/** A device as the server sees an agent: register, heartbeat with its installed set, report. */
class SimDevice {
  seq = 0;
  installed: Array<{ name: string; kind: string; version: string; sha256: string; state: string }> = [];
  constructor(
    readonly name: string,
    readonly client: DeviceClient,
  ) {}

  async heartbeat(): Promise<WireAssignment[]> {
    const res = await this.client.call<{ assignments: WireAssignment[] }>('Heartbeat', { installed: this.installed });
    return res.assignments;
  }

  /** The assignment the server wants for `artifact` now, if any. */
  async desired(artifact: string): Promise<WireAssignment | undefined> {
    return (await this.heartbeat()).find((a) => a.name === artifact);
  }

  report(assignmentId: string, state: string, reason = ''): Promise<{ accepted: boolean }> {
    return this.client.call('ReportArtifactStatus', {
      assignmentId,
      state,
      sequence: ++this.seq,
      reason,
      bytesDone: 0,
      bytesTotal: 0,
      deviceTime: new Date().toISOString(),
    });
  }

  /** Runs the pipeline's reports to `outcome`, as the agent would. */
  async run(a: WireAssignment, outcome: 'HEALTHY' | 'ROLLED_BACK' | 'FAILED', sha256?: string): Promise<void> {
    if (outcome === 'FAILED') {
      await this.report(a.assignmentId, 'DOWNLOADING');
      await this.report(a.assignmentId, 'FAILED', 'could not download');
      return;
    }
    for (const s of ['DOWNLOADING', 'VERIFYING', 'APPLYING']) await this.report(a.assignmentId, s);
    await this.report(a.assignmentId, outcome, outcome === 'HEALTHY' ? 'probe ok' : 'probe failed on every attempt');
    if (outcome === 'HEALTHY' && sha256) {
      this.installed = [...this.installed.filter((i) => i.name !== a.name), { name: a.name, kind: 'model', version: a.version, sha256, state: 'HEALTHY' }];
    }
  }
}

async function devices(prefix: string, n: number, fleet = 'lab'): Promise<SimDevice[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const name = `${prefix}-${i}`;
      const creds = await provision(t.ctx, fleet, name);
      const client = new DeviceClient(t.server.grpcAddress, creds);
      clients.push(client);
      await client.call('Register', {
        hardware: null,
        agentVersion: '1.0.0',
        tags: {},
        capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }],
      });
      return new SimDevice(name, client);
    }),
  );
}

async function publishModel(name: string, version: string) {
  const file = path.join(tempDir(), `${name}-${version}`);
  fs.writeFileSync(file, crypto.randomBytes(512));
  return publishArtifact(t.ctx, { file, name, version, kind: 'model', spec: {} });
}

const probe = { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 2, initialDelaySeconds: 0 };

function rolloutInput(over: Partial<CreateRolloutInput> & Pick<CreateRolloutInput, 'group' | 'artifact'>): CreateRolloutInput {
  return { fleet: 'lab', probe, actor: ACTOR, ...over };
}

async function meshError(fn: () => unknown): Promise<MeshError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof MeshError) return err;
    throw err;
  }
  throw new Error('expected a MeshError');
}

/** Devices whose wave has started, by name. */
async function started(id: string): Promise<Set<string>> {
  return new Set((await getRollout(t.ctx, id)).devices.filter((d) => d.assignedAt !== null).map((d) => d.name));
}

function auditOf(id: string) {
  return t.ctx.store.listAudit({ subject: `rollout:${id}` });
}

describe('groups', () => {
  it('returns the names that do not resolve (unknown or decommissioned) instead of dropping them; a duplicate group is a 409', async () => {
    await devices('grp', 3);
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'grp-2' });
    const g = await createGroup(t.ctx, { fleet: 'lab', name: 'grp', devices: ['grp-0', 'nope', 'grp-1', 'grp-2', 'grp-0'], actor: ACTOR });
    expect(g).toMatchObject({ fleet: 'lab', name: 'grp', devices: ['grp-0', 'grp-1'], unresolved: ['nope', 'grp-2'] });
    expect(await getGroup(t.ctx, 'lab', 'grp')).toMatchObject({ devices: ['grp-0', 'grp-1'], unresolved: ['nope', 'grp-2'] });
    // Another fleet's device of the same name does not resolve either.
    expect((await createGroup(t.ctx, { fleet: 'elsewhere', name: 'grp', devices: ['grp-0'], actor: ACTOR })).unresolved).toEqual(['grp-0']);

    const dup = await meshError(() => createGroup(t.ctx, { fleet: 'lab', name: 'grp', devices: [], actor: ACTOR }));
    expect(dup.code).toBe('MESH_ERR_GROUP_CONFLICT');
    expect(httpStatusFor(dup.kind)).toBe(409);
    expect((await meshError(() => getGroup(t.ctx, 'lab', 'missing'))).kind).toBe('not_found');
    expect((await meshError(() => createGroup(t.ctx, { fleet: 'lab', name: 'Bad Name', devices: [], actor: ACTOR }))).code).toBe('MESH_ERR_GROUP_INVALID');

    expect(await setGroupDevices(t.ctx, 'lab', 'grp', ['grp-1', 'later'], ACTOR)).toMatchObject({ devices: ['grp-1'], unresolved: ['later'] });
    expect((await listGroups(t.ctx, { fleet: 'lab' })).map((x) => x.name)).toContain('grp');
    expect((await t.ctx.store.listAudit({ subject: 'group:lab/grp' })).map((e) => e.action)).toEqual(['group.created', 'group.devices_set']);
  });
});

describe('rollout validation', () => {
  it('refuses a bad strategy naming the path and the rule, a bad probe, and an unknown artifact or group', async () => {
    await devices('val', 2);
    await publishModel('val-model', '1.0.0');
    await createGroup(t.ctx, { fleet: 'lab', name: 'val', devices: ['val-0', 'val-1'], actor: ACTOR });
    const base = rolloutInput({ group: 'val', artifact: { name: 'val-model', version: '1.0.0' } });
    const cases: Array<[unknown, string]> = [
      [{ waves: [{ percent: 10 }, { percent: 90 }] }, 'strategy/waves/1/percent must be 100'],
      [{ waves: [{ percent: 50 }, { percent: 20 }, { percent: 100 }] }, "strategy/waves/1/percent must be greater than the previous wave's 50"],
      [{ waves: [{ percent: 100 }], max_failure_rate: 1 }, 'strategy/max_failure_rate must be < 1'],
      [{ waves: [{ percent: 100, approval: 'maybe' }] }, 'strategy/waves/0/approval must be one of'],
      [{ waves: [{ percent: 100 }], extra: true }, 'strategy must NOT have additional property "extra"'],
    ];
    for (const [strategy, message] of cases) {
      const err = await meshError(() => createRollout(t.ctx, { ...base, strategy }));
      expect(err.code).toBe('MESH_ERR_ROLLOUT_INVALID_STRATEGY');
      expect(httpStatusFor(err.kind)).toBe(400);
      expect(err.message).toContain(message);
    }
    const badProbe = await meshError(() => createRollout(t.ctx, { ...base, probe: { ...probe, timeoutSeconds: 301 } }));
    expect(badProbe.code).toBe('MESH_ERR_PROBE_INVALID');
    expect(badProbe.message).toContain('probe/timeoutSeconds must be <= 300');
    expect((await meshError(() => createRollout(t.ctx, { ...base, probe: { type: 'file', spec: {} } }))).message).toContain('probe/spec/path is required');
    expect((await meshError(() => createRollout(t.ctx, { ...base, probe: { type: 'smoke', spec: {} } }))).code).toBe('MESH_ERR_PROBE_UNKNOWN_TYPE');
    expect((await meshError(() => createRollout(t.ctx, { ...base, artifact: { name: 'val-model', version: '9.9.9' } }))).code).toBe('MESH_ERR_ARTIFACT_NOT_FOUND');
    expect((await meshError(() => createRollout(t.ctx, { ...base, group: 'ghost' }))).code).toBe('MESH_ERR_GROUP_NOT_FOUND');
    await createGroup(t.ctx, { fleet: 'lab', name: 'val-empty', devices: ['ghost-1'], actor: ACTOR });
    const empty = await meshError(() => createRollout(t.ctx, { ...base, group: 'val-empty' }));
    expect(empty.code).toBe('MESH_ERR_ROLLOUT_NO_DEVICES');
    expect(empty.message).toContain('ghost-1');
    expect((await meshError(() => getRollout(t.ctx, crypto.randomUUID()))).kind).toBe('not_found');
    expect((await listRollouts(t.ctx, { fleet: 'lab', status: 'running' })).total).toBe(0);
  });

  it('refuses (409, naming the devices) a rollout that would put a device in two active rollouts of one artifact name', async () => {
    await devices('busy', 3);
    await publishModel('busy-model', '1.0.0');
    await publishModel('busy-model', '2.0.0');
    await publishModel('busy-other', '1.0.0');
    await createGroup(t.ctx, { fleet: 'lab', name: 'busy-a', devices: ['busy-0', 'busy-1'], actor: ACTOR });
    await createGroup(t.ctx, { fleet: 'lab', name: 'busy-b', devices: ['busy-1', 'busy-2'], actor: ACTOR });
    const a = await createRollout(t.ctx, rolloutInput({ group: 'busy-a', artifact: { name: 'busy-model', version: '1.0.0' } }));
    const err = await meshError(() => createRollout(t.ctx, rolloutInput({ group: 'busy-b', artifact: { name: 'busy-model', version: '2.0.0' } })));
    expect(err.code).toBe('MESH_ERR_ROLLOUT_DEVICE_BUSY');
    expect(httpStatusFor(err.kind)).toBe(409);
    expect(err.message).toContain('busy-1');
    expect(err.message).not.toContain('busy-2');
    expect(err.details).toMatchObject({ devices: ['busy-1'], rollouts: [a.id] });
    // Another artifact name is another matter; once the first rollout ends, the device is free.
    await createRollout(t.ctx, rolloutInput({ group: 'busy-b', artifact: { name: 'busy-other', version: '1.0.0' } }));
    await abortRollout(t.ctx, a.id, { policy: 'keep' }, ACTOR);
    expect((await createRollout(t.ctx, rolloutInput({ group: 'busy-b', artifact: { name: 'busy-model', version: '2.0.0' } }))).status).toBe('running');
  });
});

describe('rollout progression', () => {
  it('splits devices into stored waves, advances automatically, and waits for approval before a manual wave', async () => {
    const sims = await devices('man', 10);
    const v1 = await publishModel('man-model', '1.0.0');
    await createGroup(t.ctx, { fleet: 'lab', name: 'man', devices: sims.map((s) => s.name), actor: ACTOR });
    const strategy = { waves: [{ percent: 10 }, { percent: 50, approval: 'auto' }, { percent: 100, approval: 'manual' }] };
    const r = await createRollout(t.ctx, rolloutInput({ group: 'man', artifact: { name: 'man-model', version: '1.0.0' }, strategy }));
    expect(r).toMatchObject({ status: 'running', currentWave: 0, artifact: { name: 'man-model', version: '1.0.0', kind: 'model' }, group: 'man' });
    expect(r.strategy).toEqual({
      waves: [
        { percent: 10, approval: 'auto' },
        { percent: 50, approval: 'auto' },
        { percent: 100, approval: 'manual' },
      ],
      max_failure_rate: 0,
    });
    expect(r.waves.map((w) => [w.devices, w.status])).toEqual([
      [1, 'active'],
      [4, 'pending'],
      [5, 'pending'],
    ]);
    expect(r.counts.PENDING).toBe(10);
    const byName = new Map(sims.map((s) => [s.name, s]));
    const waveOf = (w: number) => r.devices.filter((d) => d.wave === w).map((d) => byName.get(d.name)!);

    // Only the first wave's device is served an assignment.
    for (const s of [...waveOf(1), ...waveOf(2)]) expect(await s.desired('man-model')).toBeUndefined();
    const [first] = waveOf(0);
    const a0 = (await first!.desired('man-model'))!;
    expect(a0).toMatchObject({ rolloutId: r.id, version: '1.0.0' });
    await first!.run(a0, 'HEALTHY', v1.sha256);
    // The report itself drove the rollout: wave 1 started.
    expect(await getRollout(t.ctx, r.id)).toMatchObject({ status: 'running', currentWave: 1 });
    for (const s of waveOf(1)) await s.run((await s.desired('man-model'))!, 'HEALTHY', v1.sha256);

    let d = await getRollout(t.ctx, r.id);
    expect(d).toMatchObject({ status: 'waiting_approval', currentWave: 1 });
    expect(d.waves.map((w) => w.status)).toEqual(['complete', 'complete', 'pending']);
    for (const s of waveOf(2)) expect(await s.desired('man-model')).toBeUndefined();
    // Two drivers (say two replicas) on the same state: nothing moves without approval.
    expect(await driveRollouts(t.ctx)).toEqual([]);
    expect((await meshError(async () => await resumeRollout(t.ctx, r.id, ACTOR))).code).toBe('MESH_ERR_ROLLOUT_INVALID_STATE');

    d = await approveRollout(t.ctx, r.id, 'operator:approver');
    expect(d).toMatchObject({ status: 'running', currentWave: 2 });
    expect(d.waves[2]).toMatchObject({ status: 'active', startedBy: 'operator:approver' });
    expect((await meshError(async () => await approveRollout(t.ctx, r.id, ACTOR))).kind).toBe('conflict');
    for (const s of waveOf(2)) await s.run((await s.desired('man-model'))!, 'HEALTHY', v1.sha256);

    d = await getRollout(t.ctx, r.id);
    expect(d.status).toBe('completed');
    expect(d.counts).toMatchObject({ HEALTHY: 10, PENDING: 0 });
    expect(d.finishedAt).not.toBeNull();
    // The split was stored at creation and never changed.
    expect(d.devices.map((x) => [x.name, x.wave])).toEqual(r.devices.map((x) => [x.name, x.wave]));
    expect((await auditOf(r.id)).map((e) => [e.action, e.details.wave])).toEqual([
      ['rollout.created', undefined],
      ['rollout.wave_started', 0],
      ['rollout.wave_started', 1],
      ['rollout.awaiting_approval', 2],
      ['rollout.approved', 2],
      ['rollout.wave_started', 2],
      ['rollout.completed', undefined],
    ]);
    expect((await listRollouts(t.ctx, { fleet: 'lab', status: 'completed' })).items.map((x) => x.id)).toContain(r.id);
  });

  it('halts on the first failure with max_failure_rate 0 mid-wave, serves no new assignment while halted (over gRPC), and resume acknowledges only the old failures', async () => {
    const sims = await devices('halt', 5);
    const v1 = await publishModel('halt-model', '1.0.0');
    await createGroup(t.ctx, { fleet: 'lab', name: 'halt', devices: sims.map((s) => s.name), actor: ACTOR });
    const r = await createRollout(
      t.ctx,
      rolloutInput({ group: 'halt', artifact: { name: 'halt-model', version: '1.0.0' }, strategy: { waves: [{ percent: 100 }], max_failure_rate: 0 } }),
    );
    const [busy, bad, p1, p2, p3] = sims as [SimDevice, SimDevice, SimDevice, SimDevice, SimDevice];

    const busyA = (await busy.desired('halt-model'))!;
    await busy.report(busyA.assignmentId, 'DOWNLOADING');
    await bad.run((await bad.desired('halt-model'))!, 'ROLLED_BACK');

    let d = await getRollout(t.ctx, r.id);
    expect(d.status).toBe('halted');
    expect(d.halt).toMatchObject({ wave: 0, failures: 1, tolerance: 0, targeted: 5 });
    expect(d.counts).toMatchObject({ ROLLED_BACK: 1, DOWNLOADING: 1, PENDING: 3 });
    const halted = (await auditOf(r.id)).find((e) => e.action === 'rollout.halted')!;
    expect(halted.details).toMatchObject({ wave: 0, failures: 1, tolerance: 0 });
    expect(halted.actor).toBe('system:rollouts');

    // Devices that have not reported get nothing; the one already updating continues.
    for (const s of [p1, p2, p3]) expect(await s.desired('halt-model')).toBeUndefined();
    expect(await busy.desired('halt-model')).toMatchObject({ assignmentId: busyA.assignmentId });
    for (const s of ['VERIFYING', 'APPLYING', 'HEALTHY']) await busy.report(busyA.assignmentId, s);
    expect(await getRollout(t.ctx, r.id)).toMatchObject({ status: 'halted', counts: { HEALTHY: 1 } });
    expect(await driveRollouts(t.ctx, { rolloutId: r.id })).toEqual([]);

    d = await resumeRollout(t.ctx, r.id, 'operator:approver');
    expect(d).toMatchObject({ status: 'running', acknowledgedFailures: 1, halt: null });
    // The acknowledged failure no longer halts: a healthy report keeps it running.
    await p1.run((await p1.desired('halt-model'))!, 'HEALTHY', v1.sha256);
    expect((await getRollout(t.ctx, r.id)).status).toBe('running');
    // A new failure does.
    await p2.run((await p2.desired('halt-model'))!, 'FAILED');
    d = await getRollout(t.ctx, r.id);
    expect(d.status).toBe('halted');
    expect(d.halt).toMatchObject({ failures: 2, acknowledged: 1 });
    expect(await p3.desired('halt-model')).toBeUndefined();

    await resumeRollout(t.ctx, r.id, ACTOR);
    await p3.run((await p3.desired('halt-model'))!, 'HEALTHY', v1.sha256);
    d = await getRollout(t.ctx, r.id);
    expect(d.status).toBe('completed');
    expect(d.counts).toMatchObject({ HEALTHY: 3, ROLLED_BACK: 1, FAILED: 1 });
    expect((await auditOf(r.id)).map((e) => e.action)).toEqual([
      'rollout.created',
      'rollout.wave_started',
      'rollout.halted',
      'rollout.resumed',
      'rollout.halted',
      'rollout.resumed',
      'rollout.completed',
    ]);
  });

  it('abort keep withdraws the assignments no device has started and stops progression; updated devices keep the new version', async () => {
    const sims = await devices('keep', 4);
    const v1 = await publishModel('keep-model', '1.0.0');
    const v2 = await publishModel('keep-model', '2.0.0');
    for (const s of sims) s.installed = [{ name: 'keep-model', kind: 'model', version: '1.0.0', sha256: v1.sha256, state: 'HEALTHY' }];
    await createGroup(t.ctx, { fleet: 'lab', name: 'keep', devices: sims.map((s) => s.name), actor: ACTOR });
    for (const s of sims) await s.heartbeat();
    const r = await createRollout(
      t.ctx,
      rolloutInput({ group: 'keep', artifact: { name: 'keep-model', version: '2.0.0' }, strategy: { waves: [{ percent: 50 }, { percent: 100 }] } }),
    );
    const startedNow = await started(r.id);
    const wave0 = sims.filter((s) => startedNow.has(s.name));
    const [done, waiting] = wave0 as [SimDevice, SimDevice];
    await done.run((await done.desired('keep-model'))!, 'HEALTHY', v2.sha256);
    expect(await waiting.desired('keep-model')).toBeDefined();

    const d = await abortRollout(t.ctx, r.id, { policy: 'keep' }, ACTOR);
    expect(d).toMatchObject({ status: 'aborted', abortPolicy: 'keep' });
    expect(d.devices.find((x) => x.name === waiting.name)).toMatchObject({ state: 'PENDING', reason: 'not started: the rollout was aborted' });
    expect(await waiting.desired('keep-model')).toBeUndefined();
    expect(await done.desired('keep-model')).toMatchObject({ version: '2.0.0' });
    // Nothing progresses any more, and an aborted rollout cannot be aborted again.
    expect(await driveRollouts(t.ctx, { rolloutId: r.id })).toEqual([]);
    expect((await started(r.id)).size).toBe(2);
    expect((await meshError(async () => await abortRollout(t.ctx, r.id, { policy: 'keep' }, ACTOR))).code).toBe('MESH_ERR_ROLLOUT_INVALID_STATE');
    expect((await auditOf(r.id)).at(-1)).toMatchObject({ action: 'rollout.aborted', details: { policy: 'keep', withdrawnAssignments: 1 } });
  });

  it('abort revert sends every updated or updating device back to what it had before its wave; one with nothing before gets nothing, and says so', async () => {
    const sims = await devices('rev', 5);
    const v1 = await publishModel('rev-model', '1.0.0');
    const v2 = await publishModel('rev-model', '2.0.0');
    const [healthy, updating, rolledBack, fresh, untouched] = sims as [SimDevice, SimDevice, SimDevice, SimDevice, SimDevice];
    for (const s of [healthy, updating, rolledBack, untouched]) {
      s.installed = [{ name: 'rev-model', kind: 'model', version: '1.0.0', sha256: v1.sha256, state: 'HEALTHY' }];
      await s.heartbeat();
    }
    // The rollout reads each device's version before its wave from the stored installed set.
    await t.server.flushHeartbeatWrites();
    await createGroup(t.ctx, { fleet: 'lab', name: 'rev', devices: sims.map((s) => s.name), actor: ACTOR });
    const r = await createRollout(
      t.ctx,
      rolloutInput({ group: 'rev', artifact: { name: 'rev-model', version: '2.0.0' }, strategy: { waves: [{ percent: 100 }], max_failure_rate: 0.5 } }),
    );
    await healthy.run((await healthy.desired('rev-model'))!, 'HEALTHY', v2.sha256);
    await fresh.run((await fresh.desired('rev-model'))!, 'HEALTHY', v2.sha256);
    const up = (await updating.desired('rev-model'))!;
    await updating.report(up.assignmentId, 'DOWNLOADING');
    await rolledBack.run((await rolledBack.desired('rev-model'))!, 'ROLLED_BACK');
    expect((await getRollout(t.ctx, r.id)).status).toBe('running');

    const d = await abortRollout(t.ctx, r.id, { policy: 'revert' }, ACTOR);
    expect(d).toMatchObject({ status: 'aborted', abortPolicy: 'revert' });
    const dev = (s: SimDevice) => d.devices.find((x) => x.name === s.name)!;
    expect(dev(healthy)).toMatchObject({ previousVersion: '1.0.0', state: 'PENDING', revert: { toVersion: '1.0.0', state: 'PENDING' } });
    expect(dev(updating)).toMatchObject({ previousVersion: '1.0.0', revert: { toVersion: '1.0.0' } });
    expect(dev(fresh)).toMatchObject({ previousVersion: null, state: 'HEALTHY', revert: { toVersion: null, assignmentId: null } });
    expect(dev(fresh).revert!.note).toContain('nothing was installed');
    expect(dev(rolledBack)).toMatchObject({ state: 'ROLLED_BACK', revert: null });
    expect(dev(untouched)).toMatchObject({ state: 'PENDING', revert: null });

    // Each updated device is handed its previous version at its next heartbeat (whenever that is).
    const back = (await healthy.desired('rev-model'))!;
    expect(back).toMatchObject({ version: '1.0.0', rolloutId: r.id });
    await healthy.run(back, 'HEALTHY', v1.sha256);
    expect(await updating.desired('rev-model')).toMatchObject({ version: '1.0.0' });
    expect(await fresh.desired('rev-model')).toMatchObject({ version: '2.0.0' });
    expect(await untouched.desired('rev-model')).toBeUndefined();
    const after = await getRollout(t.ctx, r.id);
    expect(after.devices.find((x) => x.name === healthy.name)).toMatchObject({ state: 'HEALTHY', revert: { state: 'HEALTHY', toVersion: '1.0.0' } });
    const deviceId = (await t.ctx.store.getDeviceByName('lab', healthy.name))!.id;
    expect(await t.ctx.store.listInstalled(deviceId)).toMatchObject([{ name: 'rev-model', version: '1.0.0' }]);
    const aborted = (await auditOf(r.id)).find((e) => e.action === 'rollout.aborted')!;
    expect(aborted.details).toMatchObject({ policy: 'revert' });
    expect((aborted.details.reverted as Array<{ device: string }>).map((x) => x.device).sort()).toEqual([healthy.name, updating.name].sort());
    expect((aborted.details.notReverted as Array<{ device: string }>).map((x) => x.device)).toEqual([fresh.name]);
  });

  it('keeps the audit trail of all of the above a verifiable chain', async () => {
    expect(await verifyAudit(t.ctx)).toMatchObject({ verified: true });
  });
});
