import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { createAssignment, getAssignment, type CreateAssignmentInput } from '../src/fleet/assignments.js';
import { initDataDir, type MeshanicsContext } from '../src/config/data-dir.js';
import { provisionDevice } from '../src/fleet/devices.js';
import { isMeshError } from '../src/errors.js';
import { tempDir } from './helpers.js';

let ctx: MeshanicsContext;

beforeAll(async () => {
  ctx = await initDataDir({ dataDir: tempDir() });
  await provisionDevice(ctx, { fleet: 'lab', name: 'a-1' });
  const file = path.join(tempDir(), 'app.conf');
  fs.writeFileSync(file, 'key=value\n');
  await publishArtifact(ctx, { file, name: 'app-conf', version: '1', kind: 'config', spec: { destination: '/etc/app/app.conf', mode: '0644' } });
  await publishArtifact(ctx, { file, name: 'app-conf', version: '2', kind: 'config', spec: { destination: '/etc/app/app.conf', mode: '0644' } });
});
afterAll(() => ctx.close());

const base: CreateAssignmentInput = {
  fleet: 'lab',
  device: 'a-1',
  artifact: 'app-conf',
  version: '1',
  probe: { type: 'http', spec: { url: 'http://127.0.0.1:8080/healthz' } },
};

async function failure(input: CreateAssignmentInput): Promise<{ code: string; message: string }> {
  try {
    await createAssignment(ctx, input);
  } catch (err) {
    if (isMeshError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected createAssignment to fail');
}

describe('assignments', () => {
  it('assigns to a device that has a certificate but never ran its agent, with probe defaults filled in', async () => {
    const { assignmentId, superseded } = await createAssignment(ctx, base);
    expect(superseded).toEqual([]);
    const view = await getAssignment(ctx, assignmentId);
    expect(view).toMatchObject({
      state: 'PENDING',
      reason: '',
      reports: [],
      assignment: {
        fleet: 'lab',
        device: 'a-1',
        active: true,
        artifact: { name: 'app-conf', version: '1', kind: 'config', targetPath: 'app-conf/1/app-conf' },
        probe: { type: 'http', spec: { url: 'http://127.0.0.1:8080/healthz' }, timeoutSeconds: 10, attempts: 3, initialDelaySeconds: 0 },
      },
    });
  });

  it('refuses a kind a registered device did not advertise, naming what it does advertise', async () => {
    const { spiffeId } = await provisionDevice(ctx, { fleet: 'lab', name: 'models-only' });
    await ctx.store.registerDevice({
      spiffeId,
      fleet: 'lab',
      name: 'models-only',
      profile: { hardware: null, agentVersion: '1', tags: {}, capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }] },
      now: new Date().toISOString(),
    });
    expect(await failure({ ...base, device: 'models-only' })).toEqual({
      code: 'MESH_ERR_DEVICE_UNSUPPORTED_KIND',
      message: 'device(s) models-only (advertises: model) did not advertise artifact kind "config" in Register',
    });
  });

  it('supersedes the active assignment of the same artifact name on that device', async () => {
    const first = await createAssignment(ctx, { ...base, version: '1' });
    const second = await createAssignment(ctx, { ...base, version: '2' });
    expect(second.superseded).toEqual([first.assignmentId]);
    expect((await getAssignment(ctx, first.assignmentId)).assignment.active).toBe(false);
    expect((await getAssignment(ctx, second.assignmentId)).assignment.active).toBe(true);
    expect((await ctx.store.listDesiredArtifacts((await ctx.store.getDeviceByName('lab', 'a-1'))!.id)).map((d) => d.assignment.id)).toEqual([second.assignmentId]);
  });

  it('rejects probes that break the common contract or their type schema, naming path and rule', async () => {
    expect(await failure({ ...base, probe: { ...base.probe, timeoutSeconds: 0 } })).toMatchObject({
      code: 'MESH_ERR_PROBE_INVALID',
      message: expect.stringContaining('probe/timeoutSeconds must be >= 1'),
    });
    expect((await failure({ ...base, probe: { ...base.probe, attempts: 11 } })).message).toContain('probe/attempts must be <= 10');
    expect((await failure({ ...base, probe: { type: 'file', spec: '{}' } })).message).toContain('probe/spec/path is required');
    expect((await failure({ ...base, probe: { type: 'file', spec: '{not json' } })).message).toContain('probe/spec is not valid JSON');
    expect((await failure({ ...base, probe: { type: 'smoke-signal', spec: {} } })).code).toBe('MESH_ERR_PROBE_UNKNOWN_TYPE');
  });

  it('refuses unknown devices and unpublished versions', async () => {
    expect((await failure({ ...base, device: 'nobody' })).code).toBe('MESH_ERR_DEVICE_NOT_FOUND');
    expect((await failure({ ...base, version: '9' })).code).toBe('MESH_ERR_ARTIFACT_NOT_FOUND');
    await expect(getAssignment(ctx, 'missing')).rejects.toThrow(/no assignment missing/);
  });
});
