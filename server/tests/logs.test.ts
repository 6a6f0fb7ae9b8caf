// Device logs end to end over real mTLS gRPC: request -> heartbeat -> UploadLogs -> stored
// bundle, and every way an upload is refused with nothing stored.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDeviceGrpcServer } from '../src/device-api/device-service.js';
import { decommissionDevice } from '../src/fleet/devices.js';
import { isMeshError } from '../src/errors.js';
import { silentLogger } from '../src/observability/log.js';
import { getLogBundle, listLogRequests, LOG_UPLOAD_OVERHEAD_BYTES, requestDeviceLogs } from '../src/logs/requests.js';
import { removeStaleLogUploads } from '../src/logs/upload.js';
import { DeviceClient, provision, startTestServer, tempDir, type TestServer, type TlsIdentity } from './helpers.js';

let t: TestServer;
const clients: DeviceClient[] = [];

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await t.close();
});

async function device(name: string): Promise<{ client: DeviceClient; tls: TlsIdentity }> {
  const creds = await provision(t.ctx, 'lab', name);
  const client = new DeviceClient(t.server.grpcAddress, creds);
  clients.push(client);
  await client.call('Register', { hardware: null, agentVersion: '1', tags: {}, capabilities: [] });
  return { client, tls: creds };
}

interface Chunk {
  logRequestId?: string;
  data: Buffer;
}

/** Streams `chunks` through UploadLogs; resolves to the response or the gRPC error. */
function upload(client: DeviceClient, chunks: Chunk[], options: { end?: boolean } = {}): Promise<{ bytesReceived: number } | grpc.ServiceError> {
  return new Promise((resolve) => {
    const raw = client.raw as unknown as {
      UploadLogs: (options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { bytesReceived: number }) => void) => grpc.ClientWritableStream<Chunk>;
    };
    const stream = raw.UploadLogs({ deadline: Date.now() + 10_000 }, (err, res) => resolve(err ?? res!));
    for (const c of chunks) stream.write(c);
    if (options.end !== false) stream.end();
  });
}

function split(data: Buffer, size: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return parts;
}

function logsDirEntries(): string[] {
  return fs.readdirSync(t.ctx.layout.logsDir);
}

describe('device logs', () => {
  it('delivers a request in every heartbeat until uploaded, stores the gzip byte for byte, then refuses a second upload', async () => {
    const { client } = await device('logs-1');
    const { logRequestId } = await requestDeviceLogs(t.ctx, {
      fleet: 'lab',
      device: 'logs-1',
      since: '2025-01-01T00:00:00Z',
      until: '2025-01-02T00:00:00+01:00',
      maxBytes: 64 * 1024,
    });
    const expected = { logRequestId, since: '2025-01-01T00:00:00.000Z', until: '2025-01-01T23:00:00.000Z', maxBytes: 64 * 1024 };
    for (let i = 0; i < 2; i++) {
      expect((await client.call<{ logRequests: unknown[] }>('Heartbeat', { installed: [] })).logRequests).toEqual([expected]);
    }

    const source = Buffer.from(Array.from({ length: 2000 }, (_, i) => `{"MESSAGE":"line ${i}","_PID":"42"}`).join('\n'));
    const gzip = zlib.gzipSync(source);
    const [first, ...rest] = split(gzip, 1000);
    const res = await upload(client, [{ logRequestId, data: first! }, ...rest.map((data) => ({ data }))]);
    expect(res).toEqual({ bytesReceived: gzip.length });

    const bundle = await getLogBundle(t.ctx, logRequestId);
    expect(bundle).toMatchObject({ fleet: 'lab', device: 'logs-1', sizeBytes: gzip.length, sha256: crypto.createHash('sha256').update(gzip).digest('hex') });
    expect(fs.readFileSync(bundle.path).equals(gzip)).toBe(true);
    expect(zlib.gunzipSync(fs.readFileSync(bundle.path)).equals(source)).toBe(true);
    expect(fs.statSync(bundle.path).mode & 0o777).toBe(0o600);
    expect(fs.statSync(t.ctx.layout.logsDir).mode & 0o777).toBe(0o700);
    expect(await listLogRequests(t.ctx, { fleet: 'lab', device: 'logs-1' })).toMatchObject([{ logRequestId, status: 'fulfilled', sizeBytes: gzip.length }]);

    expect((await client.call<{ logRequests: unknown[] }>('Heartbeat', { installed: [] })).logRequests).toEqual([]);
    const again = (await upload(client, [{ logRequestId, data: zlib.gzipSync('other') }])) as grpc.ServiceError;
    expect(again.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(again.details).toBe('log request already fulfilled');
    expect(fs.readFileSync(bundle.path).equals(gzip)).toBe(true);

    const spiffeId = (await t.ctx.store.getDeviceByName('lab', 'logs-1'))!.spiffeId;
    expect((await t.ctx.store.listAudit({ subject: `device:${spiffeId}` })).map((e) => e.action)).toEqual([
      'device.certificate_issued',
      'device.registered',
      'logs.requested',
      'logs.uploaded',
      'logs.upload_refused',
    ]);
  });

  it("refuses with NOT_FOUND an upload for a request it never issued to this device (another device's, or made up), storing nothing", async () => {
    const { client: owner } = await device('logs-own');
    const { client: intruder } = await device('logs-intruder');
    const { logRequestId } = await requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-own' });
    for (const id of [logRequestId, crypto.randomUUID()]) {
      const err = (await upload(intruder, [{ logRequestId: id, data: zlib.gzipSync('forged') }])) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.NOT_FOUND);
      expect(err.details).toBe('no such log request for this device');
    }
    expect(await listLogRequests(t.ctx, { device: 'logs-own' })).toMatchObject([{ logRequestId, status: 'pending' }]);
    expect(logsDirEntries()).not.toContain(`${logRequestId}.gz`);
    expect((await owner.call<{ logRequests: { logRequestId: string }[] }>('Heartbeat', { installed: [] })).logRequests.map((r) => r.logRequestId)).toEqual([logRequestId]);
  });

  it('refuses with RESOURCE_EXHAUSTED an upload beyond maxBytes plus the gzip allowance, keeps nothing and leaves the request pending', async () => {
    const { client } = await device('logs-big');
    const { logRequestId } = await requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-big', maxBytes: 1024 });
    const before = logsDirEntries();
    // Incompressible data behind a real gzip header: only the size is wrong.
    const oversized = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3]), crypto.randomBytes(1024 + LOG_UPLOAD_OVERHEAD_BYTES)]);
    const [first, ...rest] = split(oversized, 16 * 1024);
    const err = (await upload(client, [{ logRequestId, data: first! }, ...rest.map((data) => ({ data }))])) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(logsDirEntries()).toEqual(before);
    expect(await listLogRequests(t.ctx, { device: 'logs-big' })).toMatchObject([{ status: 'pending', sizeBytes: null }]);
    // A bundle within the limit still goes through afterwards.
    expect(await upload(client, [{ logRequestId, data: zlib.gzipSync('small') }])).toMatchObject({ bytesReceived: expect.any(Number) });
  });

  it('refuses with INVALID_ARGUMENT an upload that is not gzip, or whose first chunk carries no log_request_id', async () => {
    const { client } = await device('logs-bad');
    const { logRequestId } = await requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-bad' });
    const before = logsDirEntries();
    const plain = (await upload(client, [{ logRequestId, data: Buffer.from('plain text, not gzip') }])) as grpc.ServiceError;
    expect(plain.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(plain.details).toContain('not gzip');
    const noId = (await upload(client, [{ data: zlib.gzipSync('x') }])) as grpc.ServiceError;
    expect(noId.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noId.details).toContain('log_request_id');
    const empty = (await upload(client, [])) as grpc.ServiceError;
    expect(empty.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(logsDirEntries()).toEqual(before);
    expect(await listLogRequests(t.ctx, { device: 'logs-bad' })).toMatchObject([{ status: 'pending' }]);
  });

  it('aborts an upload that goes quiet with DEADLINE_EXCEEDED and removes its partial file', async () => {
    const ca = fs.readFileSync(t.ctx.layout.caCertFile, 'utf8');
    const quick = await startDeviceGrpcServer({
      store: t.ctx.store,
      trustDomain: t.ctx.trustDomain,
      logger: silentLogger(),
      heartbeatIntervalSeconds: 15,
      logsDir: t.ctx.layout.logsDir,
      logUploadIdleTimeoutMs: 300,
      listen: '127.0.0.1:0',
      caPem: ca,
      keyPem: fs.readFileSync(t.ctx.layout.serverKeyFile, 'utf8'),
      certPem: fs.readFileSync(t.ctx.layout.serverCertFile, 'utf8'),
    });
    try {
      const { tls } = await device('logs-idle');
      const client = new DeviceClient(`127.0.0.1:${quick.port}`, tls);
      clients.push(client);
      const { logRequestId } = await requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-idle' });
      const before = logsDirEntries();
      const err = (await upload(client, [{ logRequestId, data: zlib.gzipSync('partial') }], { end: false })) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(logsDirEntries()).toEqual(before);
    } finally {
      quick.forceShutdown();
    }
  });

  it('validates log requests: size cap, time range, unknown and decommissioned devices', async () => {
    await device('logs-v');
    const codeOf = async (fn: () => unknown) => {
      try {
        await fn();
        return 'ok';
      } catch (err) {
        return isMeshError(err) ? err.code : String(err);
      }
    };
    expect(await codeOf(() => requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-v', maxBytes: 16 * 1024 * 1024 + 1 }))).toBe('MESH_ERR_LOGS_INVALID_REQUEST');
    expect(await codeOf(() => requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-v', since: 'yesterday' }))).toBe('MESH_ERR_LOGS_INVALID_REQUEST');
    expect(await codeOf(() => requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-v', since: '2025-02-01T00:00:00Z', until: '2025-01-01T00:00:00Z' }))).toBe(
      'MESH_ERR_LOGS_INVALID_REQUEST',
    );
    expect(await codeOf(() => requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'nope' }))).toBe('MESH_ERR_DEVICE_NOT_FOUND');
    const { logRequestId } = await requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-v' });
    expect(await codeOf(() => getLogBundle(t.ctx, logRequestId))).toBe('MESH_ERR_LOGS_NOT_UPLOADED');
    expect(await codeOf(() => getLogBundle(t.ctx, crypto.randomUUID()))).toBe('MESH_ERR_LOGS_REQUEST_NOT_FOUND');
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'logs-v' });
    expect(await codeOf(() => requestDeviceLogs(t.ctx, { fleet: 'lab', device: 'logs-v' }))).toBe('MESH_ERR_DEVICE_DECOMMISSIONED');
  });

  it('removes partial uploads a crash left behind (either temp name), but not recent ones nor finished bundles', () => {
    const dir = tempDir();
    // The kit's temp name (tempSibling), and the one servers before it used.
    const old = path.join(dir, '.abc.gz.tmp-0a1b2c');
    const olderFormat = path.join(dir, '.abd.gz.1.ff.tmp');
    const fresh = path.join(dir, '.def.gz.tmp-3d4e5f');
    const done = path.join(dir, 'abc.gz');
    for (const f of [old, olderFormat, fresh, done]) fs.writeFileSync(f, 'x');
    for (const f of [old, olderFormat]) fs.utimesSync(f, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
    expect(removeStaleLogUploads(dir).sort()).toEqual(['.abc.gz.tmp-0a1b2c', '.abd.gz.1.ff.tmp']);
    expect(fs.readdirSync(dir).sort()).toEqual(['.def.gz.tmp-3d4e5f', 'abc.gz']);
  });
});
