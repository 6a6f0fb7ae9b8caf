import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { createAssignment, getAssignment } from '../src/fleet/assignments.js';
import { SqlStore } from '../src/store/index.js';
import { loadDeviceService } from '@meshanics/core/contract';
import { issueDeviceCertificate } from '../src/pki/index.js';
import { certificateFromAnotherCa, DeviceClient, grpcError, provision, startTestServer, tempDir, type TestServer, type TlsIdentity } from './helpers.js';

let t: TestServer;
const clients: DeviceClient[] = [];

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await t.close();
});

async function device(name: string, fleet = 'lab'): Promise<{ client: DeviceClient; tls: TlsIdentity; spiffeId: string }> {
  const creds = await provision(t.ctx, fleet, name);
  const client = new DeviceClient(t.server.grpcAddress, creds);
  clients.push(client);
  return { client, tls: creds, spiffeId: creds.spiffeId };
}

const registerRequest = (agentVersion: string, tags: Record<string, string> = {}) => ({
  hardware: { model: 'rpi5', soc: 'bcm2712', arch: 'arm64', cpuCores: 4, memoryBytes: 8 << 30, accelerators: [], os: 'debian', kernel: '6.6' },
  agentVersion,
  tags,
  capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }],
});

let published = 0;
async function publishModel(name: string, version: string) {
  const file = path.join(tempDir(), `blob-${++published}`);
  fs.writeFileSync(file, crypto.randomBytes(1024));
  return publishArtifact(t.ctx, { file, name, version, kind: 'model', spec: { fileName: 'model.bin' } });
}

async function assign(deviceName: string, artifact: string, version: string) {
  return (
    await createAssignment(t.ctx, {
      fleet: 'lab',
      device: deviceName,
      artifact,
      version,
      probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 2, initialDelaySeconds: 1 },
    })
  ).assignmentId;
}

describe('DeviceService over mTLS', () => {
  it('Register is idempotent: the same certificate twice maps to one record, and the profile is refreshed', async () => {
    const { client, spiffeId } = await device('reg-1');
    const first = await client.call('Register', registerRequest('1.0.0', { site: 'a' }));
    expect(first).toEqual({ deviceName: 'reg-1', fleet: 'lab', heartbeatIntervalSeconds: 15 });
    const before = (await t.ctx.store.getDeviceBySpiffeId(spiffeId))!;
    const second = await client.call('Register', registerRequest('1.1.0', { site: 'b' }));
    expect(second).toEqual(first);
    const after = (await t.ctx.store.getDeviceBySpiffeId(spiffeId))!;
    expect(after.id).toBe(before.id);
    expect(after.registeredAt).toBe(before.registeredAt);
    expect(after.agentVersion).toBe('1.1.0');
    expect(after.tags).toEqual({ site: 'b' });
    expect(after.hardware?.model).toBe('rpi5');
    expect((await t.ctx.store.listAudit({ subject: `device:${spiffeId}` })).map((e) => e.action)).toEqual(['device.certificate_issued', 'device.registered']);
  });

  it('Register refreshes the hardware profile: a changed profile in the second call replaces the first', async () => {
    const { client, spiffeId } = await device('reg-hw');
    await client.call('Register', registerRequest('1.0.0'));
    expect((await t.ctx.store.getDeviceBySpiffeId(spiffeId))!.hardware).toMatchObject({ model: 'rpi5', memoryBytes: 8 << 30, accelerators: [] });
    const upgraded = { model: 'jetson-orin', soc: 'tegra234', arch: 'arm64', cpuCores: 12, memoryBytes: 32 * 2 ** 30, accelerators: ['gpu', 'dla'], os: 'ubuntu', kernel: '5.15' };
    await client.call('Register', { ...registerRequest('1.0.0'), hardware: upgraded });
    expect((await t.ctx.store.getDeviceBySpiffeId(spiffeId))!.hardware).toEqual(upgraded);
  });

  it('refuses every device call from a client without a certificate during the TLS handshake', async () => {
    // Real TLS to the real server, trusting its CA, presenting no client certificate.
    const { Client } = loadDeviceService();
    const anonymous = new Client(t.server.grpcAddress, grpc.credentials.createSsl(fs.readFileSync(t.ctx.layout.caCertFile)));
    try {
      for (const [method, request] of [
        ['Register', registerRequest('1')],
        ['Heartbeat', { installed: [] }],
        [
          'ReportArtifactStatus',
          { assignmentId: crypto.randomUUID(), state: 'HEALTHY', sequence: 1, reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: new Date().toISOString() },
        ],
      ] as const) {
        const fn = (anonymous as unknown as Record<string, (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void>)[method]!;
        const err = await new Promise<grpc.ServiceError | null>((resolve) => fn.call(anonymous, request, { deadline: Date.now() + 5000 }, resolve));
        expect(err?.code, method).toBe(grpc.status.UNAVAILABLE);
      }
      const upload = await new Promise<grpc.ServiceError | null>((resolve) => {
        const client = anonymous as unknown as {
          UploadLogs: (meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientWritableStream<unknown>;
        };
        const call = client.UploadLogs(new grpc.Metadata(), { deadline: Date.now() + 5000 }, resolve);
        call.on('error', () => undefined);
        call.write({ logRequestId: crypto.randomUUID(), data: Buffer.from('x') });
        call.end();
      });
      expect(upload?.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      anonymous.close();
    }
  });

  it('takes identity from the certificate alone: two certificates are two devices', async () => {
    const a = await device('id-a');
    const b = await device('id-b', 'other-fleet');
    expect(await a.client.call('Register', registerRequest('1'))).toMatchObject({ deviceName: 'id-a', fleet: 'lab' });
    expect(await b.client.call('Register', registerRequest('1'))).toMatchObject({ deviceName: 'id-b', fleet: 'other-fleet' });
    const da = (await t.ctx.store.getDeviceBySpiffeId(a.spiffeId))!;
    const db = (await t.ctx.store.getDeviceBySpiffeId(b.spiffeId))!;
    expect(da.id).not.toBe(db.id);
    expect(db.spiffeId).toBe('spiffe://meshanics.local/fleet/other-fleet/device/id-b');
  });

  it('answers a Heartbeat from a device that never registered with FAILED_PRECONDITION', async () => {
    const { client } = await device('hb-unregistered');
    const err = await grpcError(client.call('Heartbeat', { installed: [] }));
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/register first/);
  });

  it('returns one active assignment per artifact name with its TUF target, digest and probe; a newer one supersedes it', async () => {
    const { client, spiffeId } = await device('hb-1');
    await client.call('Register', registerRequest('1'));
    const v1 = await publishModel('hb-model', '1.0.0');
    const v2 = await publishModel('hb-model', '2.0.0');
    const first = await assign('hb-1', 'hb-model', '1.0.0');
    const second = await assign('hb-1', 'hb-model', '2.0.0');
    const res = await client.call<{ assignments: Record<string, unknown>[]; nextHeartbeatSeconds: number; offboarded: boolean }>('Heartbeat', {
      installed: [{ name: 'hb-model', kind: 'model', version: '1.0.0', sha256: v1.sha256, state: 'HEALTHY' }],
    });
    expect(res.assignments).toHaveLength(1);
    expect(res.assignments[0]).toMatchObject({
      assignmentId: second,
      rolloutId: '',
      kind: 'model',
      name: 'hb-model',
      version: '2.0.0',
      targetPath: 'hb-model/2.0.0/hb-model',
      expectedSha256: v2.sha256,
      expectedLength: 1024,
      specJson: '{"fileName":"model.bin"}',
      probe: { type: 'file', specJson: '{"path":"/run/ready"}', timeoutSeconds: 5, attempts: 2, initialDelaySeconds: 1 },
    });
    expect(res.offboarded).toBe(false);
    expect(res.nextHeartbeatSeconds).toBe(15);
    expect((await getAssignment(t.ctx, first)).assignment.active).toBe(false);
    await t.server.flushHeartbeatWrites();
    const dev = (await t.ctx.store.getDeviceBySpiffeId(spiffeId))!;
    expect(dev.lastSeenAt).not.toBeNull();
    expect(await t.ctx.store.listInstalled(dev.id)).toMatchObject([{ name: 'hb-model', version: '1.0.0', state: 'HEALTHY' }]);
  });

  it('stores each status report once: a repeated or lower sequence is answered accepted=false and dropped', async () => {
    const { client, spiffeId } = await device('rep-1');
    await client.call('Register', registerRequest('1'));
    const art = await publishModel('rep-model', '1.0.0');
    const id = await assign('rep-1', 'rep-model', '1.0.0');
    const report = (sequence: number, state: string, reason = '') =>
      client.call('ReportArtifactStatus', { assignmentId: id, state, sequence, reason, bytesDone: 0, bytesTotal: 1024, deviceTime: new Date().toISOString() });
    expect(await report(1, 'DOWNLOADING')).toEqual({ accepted: true });
    expect(await report(1, 'DOWNLOADING')).toEqual({ accepted: false });
    expect(await report(2, 'VERIFYING')).toEqual({ accepted: true });
    expect(await report(1, 'FAILED', 'late duplicate')).toEqual({ accepted: false });
    expect(await report(3, 'APPLYING')).toEqual({ accepted: true });
    expect(await report(4, 'HEALTHY', 'probe ok')).toEqual({ accepted: true });
    const view = await getAssignment(t.ctx, id);
    expect(view.state).toBe('HEALTHY');
    expect(view.reason).toBe('probe ok');
    expect(view.reports.map((r) => [r.sequence, r.state])).toEqual([
      [1, 'DOWNLOADING'],
      [2, 'VERIFYING'],
      [3, 'APPLYING'],
      [4, 'HEALTHY'],
    ]);
    const dev = (await t.ctx.store.getDeviceBySpiffeId(spiffeId))!;
    expect(dev.lastReportSeq).toBe(4);
    expect(await t.ctx.store.listInstalled(dev.id)).toMatchObject([{ name: 'rep-model', version: '1.0.0', sha256: art.sha256, state: 'HEALTHY' }]);
    // Each stored transition once; the replays (accepted=false) add nothing.
    expect((await t.ctx.store.listAudit({ subject: `assignment:${id}` })).map((e) => e.action)).toEqual([
      'assignment.created',
      'assignment.downloading',
      'assignment.verifying',
      'assignment.applying',
      'assignment.healthy',
    ]);
  });

  it('does not store a report whose deadline passed while it waited for the write lock; the retry is stored', async () => {
    const { client, spiffeId } = await device('rep-late');
    await client.call('Register', registerRequest('1'));
    await publishModel('late-model', '1.0.0');
    const id = await assign('rep-late', 'late-model', '1.0.0');
    const report = { assignmentId: id, state: 'DOWNLOADING', sequence: 1, reason: '', bytesDone: 0, bytesTotal: 1024, deviceTime: new Date().toISOString() };
    // Another writer holds the write lock past the report's deadline (a wave's backlog).
    let release!: () => void;
    const held = t.ctx.store.withWriteLock(() => new Promise<void>((r) => (release = r)));
    const late = grpcError(client.call('ReportArtifactStatus', report, { deadlineMs: 300 }));
    expect((await late).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    release();
    await held;
    // The device's retry (same sequence) queues behind the late one in the same batcher. Had
    // the late one been written after the device gave up, the retry would be a duplicate.
    expect(await client.call('ReportArtifactStatus', report)).toEqual({ accepted: true });
    expect((await t.ctx.store.getDeviceBySpiffeId(spiffeId))!.lastReportSeq).toBe(1);
    expect((await getAssignment(t.ctx, id)).reports.map((r) => [r.sequence, r.state])).toEqual([[1, 'DOWNLOADING']]);
  });

  it("reads at most four reports' devices at once, so a burst of reports leaves connections to heartbeats", async () => {
    const devices = await Promise.all(Array.from({ length: 10 }, (_, i) => device(`burst-${i}`)));
    await publishModel('burst-model', '1.0.0');
    const ids: string[] = [];
    for (const [i, d] of devices.entries()) {
      await d.client.call('Register', registerRequest('1'));
      ids.push(await assign(`burst-${i}`, 'burst-model', '1.0.0'));
    }
    // Counts the server's report reads in flight, each held open a little (a busy database).
    // On the class: the server in this process has a store of its own.
    const original = SqlStore.prototype.getReportingDevice;
    let inFlight = 0;
    let most = 0;
    SqlStore.prototype.getReportingDevice = async function (this: SqlStore, ...args) {
      most = Math.max(most, ++inFlight);
      try {
        await new Promise((r) => setTimeout(r, 30));
        return await original.apply(this, args);
      } finally {
        inFlight--;
      }
    };
    try {
      const answers = await Promise.all(
        devices.map((d, i) =>
          d.client.call('ReportArtifactStatus', {
            assignmentId: ids[i],
            state: 'DOWNLOADING',
            sequence: 1,
            reason: '',
            bytesDone: 0,
            bytesTotal: 1024,
            deviceTime: new Date().toISOString(),
          }),
        ),
      );
      expect(answers).toEqual(devices.map(() => ({ accepted: true })));
      expect(most).toBe(4);
    } finally {
      SqlStore.prototype.getReportingDevice = original;
    }
  });

  it("refuses a report on another device's assignment with NOT_FOUND and stores nothing", async () => {
    const owner = await device('own-1');
    const intruder = await device('own-2');
    await owner.client.call('Register', registerRequest('1'));
    await intruder.client.call('Register', registerRequest('1'));
    await publishModel('own-model', '1.0.0');
    const id = await assign('own-1', 'own-model', '1.0.0');
    const err = await grpcError(intruder.client.call('ReportArtifactStatus', { assignmentId: id, state: 'FAILED', sequence: 1, reason: 'x' }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    const unknown = await grpcError(intruder.client.call('ReportArtifactStatus', { assignmentId: crypto.randomUUID(), state: 'FAILED', sequence: 1 }));
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    expect(await getAssignment(t.ctx, id)).toMatchObject({ state: 'PENDING', reports: [] });
    expect((await t.ctx.store.getDeviceBySpiffeId(intruder.spiffeId))!.lastReportSeq).toBe(0);
  });

  it('rejects malformed requests with INVALID_ARGUMENT', async () => {
    const { client } = await device('bad-1');
    const badTag = await grpcError(client.call('Register', registerRequest('1', { 'bad key!': 'v' })));
    expect(badTag.code).toBe(grpc.status.INVALID_ARGUMENT);
    await client.call('Register', registerRequest('1'));
    await publishModel('bad-model', '1.0.0');
    const id = await assign('bad-1', 'bad-model', '1.0.0');
    const badState = await grpcError(client.call('ReportArtifactStatus', { assignmentId: id, state: 'ARTIFACT_STATE_UNSPECIFIED', sequence: 1 }));
    expect(badState.code).toBe(grpc.status.INVALID_ARGUMENT);
    const badInstalled = await grpcError(client.call('Heartbeat', { installed: [{ name: '../x', kind: 'model', version: '1', sha256: 'x', state: 'HEALTHY' }] }));
    expect(badInstalled.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('refuses a message above the 1 MiB receive limit', async () => {
    const { client } = await device('big-1');
    const err = await grpcError(client.call('Register', registerRequest('1', { big: 'x'.repeat(2 * 1024 * 1024) })));
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('treats a certificate from our CA for another trust domain as UNAUTHENTICATED', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = await issueDeviceCertificate(await t.ctx.deviceCa(), publicKey, { trustDomain: 'evil.example', fleet: 'lab', name: 'reg-1' });
    const client = new DeviceClient(t.server.grpcAddress, {
      caPem: fs.readFileSync(t.ctx.layout.caCertFile, 'utf8'),
      certPem: issued.certPem,
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    });
    clients.push(client);
    const err = await grpcError(client.call('Register', registerRequest('1')));
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses a client certificate issued by another CA during the TLS handshake', async () => {
    const forged = await certificateFromAnotherCa('reg-1');
    const client = new DeviceClient(t.server.grpcAddress, {
      caPem: fs.readFileSync(t.ctx.layout.caCertFile, 'utf8'),
      certPem: forged.certPem,
      keyPem: forged.keyPem,
    });
    clients.push(client);
    const err = await grpcError(client.call('Register', registerRequest('1')));
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
  });
});
