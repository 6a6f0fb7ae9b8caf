// REST API resources through `inject` against a real server's data dir: devices registered
// and reporting over real mTLS gRPC, enrollment tokens, log requests delivered by UploadLogs.
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import type * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApi } from '../src/api/app.js';
import { createAssignment } from '../src/fleet/assignments.js';
import { ALL_PERMISSIONS, call, closeDeviceClients, FILE_PROBE, key, publishModel, simDevices, type SimDevice } from './api-helpers.js';
import { startTestServer, type TestServer } from './helpers.js';

let t: TestServer;
let app: FastifyInstance;
let admin: string;
let labOnly: string;
let lab: SimDevice[];

const HEARTBEAT_SECONDS = 15;

beforeAll(async () => {
  t = await startTestServer({ heartbeatIntervalSeconds: HEARTBEAT_SECONDS });
  app = buildApi(t.ctx, { heartbeatIntervalSeconds: HEARTBEAT_SECONDS, consoleDir: null });
  await app.ready();
  admin = await key(t.ctx, ALL_PERMISSIONS, { approve: true, name: 'admin' });
  labOnly = await key(t.ctx, ALL_PERMISSIONS, { fleet: 'lab', name: 'lab-operator' });
  lab = await simDevices(t, 'lab', ['cam-1', 'cam-2', 'cam-3'], { site: 'north' });
  await simDevices(t, 'lab', ['gate-1'], { site: 'south' });
  await simDevices(t, 'other', ['secret-1']);
  // Provisioned, never connected: known to the server, never seen.
  await import('./helpers.js').then((h) => h.provision(t.ctx, 'lab', 'spare-1'));
});
afterAll(async () => {
  closeDeviceClients();
  await app.close();
  await t.close();
});

describe('devices', () => {
  it('lists devices with filters by fleet, tag and online, and restricts a fleet-bound key to its fleet', async () => {
    const all = await call(app, 'GET', '/api/v1/devices', { key: admin });
    expect(all.status).toBe(200);
    expect(all.json).toMatchObject({ total: 6, limit: 50, offset: 0 });
    expect(all.json.items.map((d: any) => `${d.fleet}/${d.name}`)).toEqual(['lab/cam-1', 'lab/cam-2', 'lab/cam-3', 'lab/gate-1', 'lab/spare-1', 'other/secret-1']);
    expect(all.json.items[0]).toEqual({
      fleet: 'lab',
      name: 'cam-1',
      spiffeId: 'spiffe://meshanics.local/fleet/lab/device/cam-1',
      agentVersion: '1.2.3',
      tags: { site: 'north' },
      online: true,
      heartbeatIntervalSeconds: HEARTBEAT_SECONDS,
      createdAt: expect.any(String),
      registeredAt: expect.any(String),
      lastSeenAt: expect.any(String),
      decommissionedAt: null,
    });

    const names = async (url: string, k = admin) => (await call(app, 'GET', url, { key: k })).json.items.map((d: any) => d.name);
    expect(await names('/api/v1/devices?fleet=other')).toEqual(['secret-1']);
    expect(await names('/api/v1/devices?tag=site=north')).toEqual(['cam-1', 'cam-2', 'cam-3']);
    expect(await names('/api/v1/devices?tag=site=south&fleet=lab')).toEqual(['gate-1']);
    expect(await names('/api/v1/devices?tag=site=north&tag=site=south')).toEqual([]);
    expect(await names('/api/v1/devices?online=false')).toEqual(['spare-1']);
    expect(await names('/api/v1/devices?online=true&fleet=lab')).toEqual(['cam-1', 'cam-2', 'cam-3', 'gate-1']);
    expect(await names('/api/v1/devices', labOnly)).toEqual(['cam-1', 'cam-2', 'cam-3', 'gate-1', 'spare-1']);
    expect((await call(app, 'GET', '/api/v1/devices?fleet=other', { key: labOnly })).json).toEqual({ items: [], total: 0, limit: 50, offset: 0 });
    expect((await call(app, 'GET', '/api/v1/devices?tag=nokey', { key: admin })).json.error).toMatch(/^querystring\/tag\/0 must match pattern/);
  });

  it('a device is offline once its last heartbeat is older than three of its intervals', async () => {
    const online = async () => (await call(app, 'GET', '/api/v1/devices/lab/cam-1', { key: admin })).json.online;
    expect(await online()).toBe(true);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + (3 * HEARTBEAT_SECONDS - 2) * 1000);
      expect(await online()).toBe(true);
      vi.setSystemTime(Date.now() + 4000);
      expect(await online()).toBe(false);
      expect((await call(app, 'GET', '/api/v1/devices?online=true&fleet=lab', { key: admin })).json.items).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('shows one device with its hardware, capabilities, installed artifacts and history newest first', async () => {
    await publishModel(t.ctx, 'detector', '1.0.0');
    const { assignmentId } = await createAssignment(t.ctx, { fleet: 'lab', device: 'cam-2', artifact: 'detector', version: '1.0.0', probe: FILE_PROBE });
    await lab[1]!.run(assignmentId, 'HEALTHY');
    await lab[1]!.client.call('Heartbeat', {
      installed: [{ name: 'detector', kind: 'model', version: '1.0.0', sha256: (await t.ctx.store.getArtifact('detector', '1.0.0'))!.sha256, state: 'HEALTHY' }],
    });

    const res = await call(app, 'GET', '/api/v1/devices/lab/cam-2', { key: admin });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      name: 'cam-2',
      hardware: { model: 'rpi5', arch: 'arm64', cpuCores: 4 },
      capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }],
      installed: [{ name: 'detector', kind: 'model', version: '1.0.0', state: 'HEALTHY' }],
      decommissionedAt: null,
    });
    expect(res.json.history.map((h: any) => [h.sequence, h.state])).toEqual([
      [4, 'HEALTHY'],
      [3, 'APPLYING'],
      [2, 'VERIFYING'],
      [1, 'DOWNLOADING'],
    ]);
    expect(res.json.history[0]).toMatchObject({ assignmentId, rolloutId: null, artifact: { name: 'detector', version: '1.0.0' }, reason: 'probe ok' });
  });

  it('answers 404 for an unknown device and for a device of another fleet, the same way', async () => {
    const unknown = await call(app, 'GET', '/api/v1/devices/lab/nope', { key: labOnly });
    const foreign = await call(app, 'GET', '/api/v1/devices/other/secret-1', { key: labOnly });
    expect(unknown).toMatchObject({ status: 404, json: { error: 'no device lab/nope', code: 'MESH_ERR_DEVICE_NOT_FOUND' } });
    expect(foreign).toMatchObject({ status: 404, json: { error: 'no device other/secret-1', code: 'MESH_ERR_DEVICE_NOT_FOUND' } });
    expect((await call(app, 'POST', '/api/v1/devices/other/secret-1/decommission', { key: labOnly })).status).toBe(404);
    expect((await call(app, 'POST', '/api/v1/devices/other/secret-1/log-requests', { key: labOnly, body: {} })).status).toBe(404);
    expect((await call(app, 'GET', '/api/v1/devices/other/secret-1', { key: admin })).status).toBe(200);
    expect((await call(app, 'GET', '/api/v1/devices/LAB/x', { key: admin })).json.error).toMatch(/^params\/fleet must match pattern/);
  });

  it('decommissions a device (record and history stay) and audits it with the key name as actor', async () => {
    const res = await call(app, 'POST', '/api/v1/devices/lab/gate-1/decommission', { key: admin });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ fleet: 'lab', name: 'gate-1', decommissionedAt: expect.any(String) });
    const detail = (await call(app, 'GET', '/api/v1/devices/lab/gate-1', { key: admin })).json;
    expect(detail).toMatchObject({ decommissionedAt: res.json.decommissionedAt, online: false });
    const events = await t.ctx.store.listAudit({ action: 'device.decommissioned' });
    expect(events.at(-1)).toMatchObject({ actor: 'admin', subject: 'device:spiffe://meshanics.local/fleet/lab/device/gate-1' });
    // Idempotent.
    expect((await call(app, 'POST', '/api/v1/devices/lab/gate-1/decommission', { key: admin })).json.decommissionedAt).toBe(res.json.decommissionedAt);
  });

  it('paginates: default 50, at most 200, offset; out-of-range bounds are 400 naming the path and the rule', async () => {
    const now = new Date().toISOString();
    for (let i = 0; i < 60; i++) {
      const name = `bulk-${String(i).padStart(2, '0')}`;
      await t.ctx.store.ensureDevice({ spiffeId: `spiffe://meshanics.local/fleet/bulk/device/${name}`, fleet: 'bulk', name, now });
    }
    const first = await call(app, 'GET', '/api/v1/devices?fleet=bulk', { key: admin });
    expect(first.json).toMatchObject({ total: 60, limit: 50, offset: 0 });
    expect(first.json.items).toHaveLength(50);
    const rest = await call(app, 'GET', '/api/v1/devices?fleet=bulk&offset=50&limit=200', { key: admin });
    expect(rest.json).toMatchObject({ total: 60, limit: 200, offset: 50 });
    expect(rest.json.items.map((d: any) => d.name)).toEqual(Array.from({ length: 10 }, (_, i) => `bulk-${50 + i}`));
    for (const [url, error] of [
      ['/api/v1/devices?limit=201', 'querystring/limit must be <= 200'],
      ['/api/v1/devices?limit=0', 'querystring/limit must be >= 1'],
      ['/api/v1/devices?offset=-1', 'querystring/offset must be >= 0'],
      ['/api/v1/enrollment-tokens?limit=abc', 'querystring/limit must be integer'],
    ] as const) {
      expect(await call(app, 'GET', url, { key: admin })).toMatchObject({ status: 400, json: { error, code: 'MESH_ERR_API_INVALID' } });
    }
  });
});

describe('enrollment tokens', () => {
  it('creates (201, token shown once), lists without secrets, and revokes (idempotent, audited with the key name)', async () => {
    const created = await call(app, 'POST', '/api/v1/enrollment-tokens', { key: labOnly, body: { fleet: 'lab', expiresInSeconds: 3600, uses: 5 } });
    expect(created.status).toBe(201);
    expect(created.json).toEqual({ id: expect.any(String), token: expect.stringMatching(/^mesh_enr_/), fleet: 'lab', expiresAt: expect.any(String), uses: 5, deviceName: null });

    const listed = await call(app, 'GET', '/api/v1/enrollment-tokens?fleet=lab', { key: labOnly });
    expect(listed.status).toBe(200);
    const mine = listed.json.items.find((x: any) => x.id === created.json.id);
    expect(mine).toMatchObject({ fleet: 'lab', usesTotal: 5, usesLeft: 5, status: 'active', createdBy: 'lab-operator', revokedAt: null });
    expect(listed.body).not.toContain(created.json.token);

    const revoked = await call(app, 'DELETE', `/api/v1/enrollment-tokens/${created.json.id}`, { key: labOnly });
    expect(revoked.json).toMatchObject({ id: created.json.id, status: 'revoked', revokedBy: 'lab-operator' });
    expect((await call(app, 'DELETE', `/api/v1/enrollment-tokens/${created.json.id}`, { key: labOnly })).json.revokedAt).toBe(revoked.json.revokedAt);
    expect((await t.ctx.store.listAudit({ subject: `enrollment-token:${created.json.id}` })).map((e) => [e.action, e.actor])).toEqual([
      ['enrollment_token.created', 'lab-operator'],
      ['enrollment_token.revoked', 'lab-operator'],
    ]);
  });

  it('validates the body (path and rule) and keeps other fleets out of reach (404)', async () => {
    expect(await call(app, 'POST', '/api/v1/enrollment-tokens', { key: admin, body: { fleet: 'lab', uses: 0 } })).toMatchObject({
      status: 400,
      json: { error: 'body/uses must be >= 1', code: 'MESH_ERR_API_INVALID' },
    });
    expect(await call(app, 'POST', '/api/v1/enrollment-tokens', { key: admin, body: { fleet: 'lab', extra: 1 } })).toMatchObject({
      status: 400,
      json: { error: 'body must NOT have additional property "extra"', code: 'MESH_ERR_API_INVALID' },
    });
    expect(await call(app, 'POST', '/api/v1/enrollment-tokens', { key: admin, body: {} })).toMatchObject({
      status: 400,
      json: { error: 'body/fleet is required', code: 'MESH_ERR_API_INVALID' },
    });
    // Binding a name and several uses is refused by the token logic itself.
    expect((await call(app, 'POST', '/api/v1/enrollment-tokens', { key: admin, body: { fleet: 'lab', uses: 2, deviceName: 'cam-9' } })).status).toBe(400);

    expect(await call(app, 'POST', '/api/v1/enrollment-tokens', { key: labOnly, body: { fleet: 'other' } })).toMatchObject({
      status: 404,
      json: { error: 'no fleet other', code: 'MESH_ERR_API_NOT_FOUND' },
    });
    const foreign = await call(app, 'POST', '/api/v1/enrollment-tokens', { key: admin, body: { fleet: 'other' } });
    expect((await call(app, 'DELETE', `/api/v1/enrollment-tokens/${foreign.json.id}`, { key: labOnly })).status).toBe(404);
    expect((await call(app, 'GET', '/api/v1/enrollment-tokens', { key: labOnly })).json.items.map((x: any) => x.fleet)).not.toContain('other');
  });
});

interface Chunk {
  logRequestId?: string;
  data: Buffer;
}

function upload(device: SimDevice, chunks: Chunk[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const raw = device.client.raw as unknown as {
      UploadLogs: (options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: unknown) => void) => grpc.ClientWritableStream<Chunk>;
    };
    const stream = raw.UploadLogs({ deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
    for (const c of chunks) stream.write(c);
    stream.end();
  });
}

describe('log requests', () => {
  it('creates a request (202), lists it pending, refuses the bundle until uploaded (409), then streams the gzip', async () => {
    const created = await call(app, 'POST', '/api/v1/devices/lab/cam-3/log-requests', { key: admin, body: { since: '2025-01-01T00:00:00Z', maxBytes: 65536 } });
    expect(created.status).toBe(202);
    expect(created.json).toEqual({ id: expect.any(String) });
    const id = created.json.id as string;

    const pending = (await call(app, 'GET', '/api/v1/log-requests?fleet=lab&device=cam-3', { key: admin })).json;
    expect(pending).toMatchObject({ total: 1, items: [{ id, fleet: 'lab', device: 'cam-3', status: 'pending', sizeBytes: null, maxBytes: 65536, requestedBy: 'admin' }] });
    expect(await call(app, 'GET', `/api/v1/log-requests/${id}/bundle`, { key: admin })).toMatchObject({ status: 409 });

    // The device learns of it at its next heartbeat and uploads the bundle.
    expect((await lab[2]!.heartbeat()).logRequests.map((r) => r.logRequestId)).toEqual([id]);
    const gzip = zlib.gzipSync(Buffer.from('{"MESSAGE":"hello"}\n'.repeat(200)));
    await upload(lab[2]!, [{ logRequestId: id, data: gzip.subarray(0, 100) }, { data: gzip.subarray(100) }]);

    const fulfilled = (await call(app, 'GET', '/api/v1/log-requests', { key: labOnly })).json.items.find((r: any) => r.id === id);
    expect(fulfilled).toMatchObject({ status: 'fulfilled', sizeBytes: gzip.length, sha256: crypto.createHash('sha256').update(gzip).digest('hex') });

    const bundle = await app.inject({ method: 'GET', url: `/api/v1/log-requests/${id}/bundle`, headers: { authorization: `Bearer ${labOnly}` } });
    expect(bundle.statusCode).toBe(200);
    expect(bundle.headers['content-type']).toBe('application/gzip');
    expect(bundle.rawPayload.equals(gzip)).toBe(true);
    expect((await t.ctx.store.listAudit({ action: 'logs.downloaded' })).at(-1)).toMatchObject({ actor: 'lab-operator', details: { logRequestId: id } });

    expect((await call(app, 'GET', `/api/v1/log-requests/nope/bundle`, { key: admin })).status).toBe(404);
    expect(await call(app, 'POST', '/api/v1/devices/lab/cam-3/log-requests', { key: admin, body: { maxBytes: 0 } })).toMatchObject({
      status: 400,
      json: { error: 'body/maxBytes must be >= 1', code: 'MESH_ERR_API_INVALID' },
    });
    expect((await call(app, 'POST', '/api/v1/devices/lab/cam-3/log-requests', { key: admin, body: { since: 'yesterday' } })).status).toBe(400);
  });

  it("hides another fleet's log requests and bundles (404)", async () => {
    const foreign = await call(app, 'POST', '/api/v1/devices/other/secret-1/log-requests', { key: admin });
    expect(foreign.status).toBe(202);
    expect((await call(app, 'GET', '/api/v1/log-requests', { key: labOnly })).json.items.map((r: any) => r.fleet)).not.toContain('other');
    expect(await call(app, 'GET', `/api/v1/log-requests/${foreign.json.id}/bundle`, { key: labOnly })).toMatchObject({
      status: 404,
      json: { error: `no log request ${foreign.json.id}`, code: 'MESH_ERR_LOGS_REQUEST_NOT_FOUND' },
    });
  });
});
