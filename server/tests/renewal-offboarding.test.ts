// Certificate renewal over the enrollment endpoint (authenticated by the current certificate)
// and offboarding: what a decommissioned identity still gets, once, and then never again.
import * as crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TUF_METADATA_PREFIX } from '@meshanics/core/contract';
import { decommissionDevice } from '../src/fleet/devices.js';
import { ENROLL_PATH, RENEW_PATH, type EnrollmentResponse } from '../src/enrollment/http.js';
import { createEnrollmentToken } from '../src/enrollment/tokens.js';
import { issueDeviceCertificate } from '../src/pki/index.js';
import {
  certificateFromAnotherCa,
  type DeviceClient,
  grpcError,
  httpsGet,
  makeCsr,
  postJson,
  REGISTER_REQUEST,
  startDeviceTestServer,
  type DeviceTestServer,
  type TlsIdentity,
} from './helpers.js';

let t: DeviceTestServer;
let caPem: string;

beforeAll(async () => {
  t = await startDeviceTestServer();
  caPem = t.caPem;
});
afterAll(() => t.close());

interface Answer extends EnrollmentResponse {
  error: string;
  code: string;
}

async function enrolled(name: string): Promise<{ tls: TlsIdentity; body: EnrollmentResponse; client: DeviceClient }> {
  const device = await makeCsr();
  const tok = await createEnrollmentToken(t.ctx, { fleet: 'lab' });
  const res = await postJson<Answer>(t.server.enrollUrl, ENROLL_PATH, { token: tok.token, name, csr: device.csrPem }, { caPem });
  expect(res.status).toBe(200);
  const tls = { keyPem: device.keyPem, certPem: res.json.certificate, caPem };
  return { tls, body: res.json, client: t.client(tls) };
}

function renew(csrPem: string, tls: Partial<TlsIdentity>) {
  return postJson<Answer>(t.server.enrollUrl, RENEW_PATH, { csr: csrPem }, { caPem, ...tls });
}

describe('POST /enroll/v1/renew', () => {
  it('renews over mTLS with a new key: same device record, new certificate for the same identity, the old one keeps working', async () => {
    const { tls, body, client: oldClient } = await enrolled('renew-1');
    await oldClient.call('Register', REGISTER_REQUEST);
    const before = (await t.ctx.store.getDeviceByName('lab', 'renew-1'))!;

    const next = await makeCsr();
    const res = await renew(next.csrPem, tls);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      fleet: 'lab',
      name: 'renew-1',
      spiffeId: body.spiffeId,
      caBundle: caPem,
      deviceApi: t.server.grpcAddress,
      artifactServer: t.server.artifactsUrl,
    });
    expect(res.json.tufRoot).toBe(body.tufRoot);
    const cert = new crypto.X509Certificate(res.json.certificate);
    expect(cert.subjectAltName).toBe(`URI:${body.spiffeId}`);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.publicKey.export({ type: 'spki', format: 'der' }).equals(next.spki)).toBe(true);
    expect(cert.serialNumber.toLowerCase()).not.toBe(new crypto.X509Certificate(body.certificate).serialNumber.toLowerCase());

    const renewed = t.client({ keyPem: next.keyPem, certPem: res.json.certificate });
    expect(await renewed.call('Register', REGISTER_REQUEST)).toMatchObject({ deviceName: 'renew-1' });
    expect(await oldClient.call('Heartbeat', { installed: [] })).toMatchObject({ offboarded: false });

    const after = (await t.ctx.store.getDeviceByName('lab', 'renew-1'))!;
    expect(after.id).toBe(before.id);
    expect(after.registeredAt).toBe(before.registeredAt);
    expect((await t.ctx.store.certificates.listForDevice(after.id)).map((c) => c.reason)).toEqual(['enrollment', 'renewal']);
    const audit = await t.ctx.store.listAudit({ subject: `device:${body.spiffeId}` });
    expect(audit.map((e) => e.action)).toEqual(['device.enrolled', 'device.registered', 'device.certificate_renewed']);
    expect(audit[2]!.details).toMatchObject({ serialNumber: cert.serialNumber.toLowerCase(), previousSerialNumber: body.serialNumber });
  });

  it('answers 401 CLIENT_CERT_REQUIRED to a renewal without a client certificate', async () => {
    const res = await renew((await makeCsr()).csrPem, {});
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED');
  });

  it('answers 401 to an expired certificate: the device must enroll again', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await enrolled('expired-1');
    const expired = await issueDeviceCertificate(
      await t.ctx.deviceCa(),
      publicKey,
      { trustDomain: 'meshanics.local', fleet: 'lab', name: 'expired-1' },
      {
        seconds: 60,
        now: new Date(Date.now() - 3600_000),
      },
    );
    const res = await renew((await makeCsr()).csrPem, { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), certPem: expired.certPem });
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED');
    expect(res.json.error).toContain('CERT_HAS_EXPIRED');
  });

  it('answers 401 to a certificate from another CA, even one naming a real device', async () => {
    await enrolled('foreign-1');
    const forged = await certificateFromAnotherCa('foreign-1');
    const res = await renew((await makeCsr()).csrPem, forged);
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED');
    expect(res.json.error).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    expect(await t.ctx.store.certificates.listForDevice((await t.ctx.store.getDeviceByName('lab', 'foreign-1'))!.id)).toHaveLength(1);
  });

  it('refuses a renewal CSR that carries the current key, or whose signature does not verify, with 400', async () => {
    const device = await makeCsr();
    const tok = await createEnrollmentToken(t.ctx, { fleet: 'lab' });
    const res = await postJson<Answer>(t.server.enrollUrl, ENROLL_PATH, { token: tok.token, name: 'samekey-1', csr: device.csrPem }, { caPem });
    const tls = { keyPem: device.keyPem, certPem: res.json.certificate };
    const same = await renew(device.csrPem, tls);
    expect(same.status).toBe(400);
    expect(same.json.code).toBe('MESH_ERR_ENROLL_KEY_REUSED');
    const bad = await renew('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', tls);
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('MESH_ERR_ENROLL_CSR_INVALID');
    expect((await t.ctx.store.listAudit({ action: 'device.renewal_refused', subject: `device:${res.json.spiffeId}` })).map((e) => e.details.code)).toEqual([
      'MESH_ERR_ENROLL_KEY_REUSED',
      'MESH_ERR_ENROLL_CSR_INVALID',
    ]);
  });
});

describe('offboarding a decommissioned device', () => {
  it('answers the first heartbeat with offboarded=true, then refuses the identity everywhere', async () => {
    const { tls, body, client: device } = await enrolled('off-1');
    await device.call('Register', REGISTER_REQUEST);
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'off-1' });

    const first = await device.call('Heartbeat', { installed: [] });
    expect(first).toEqual({ assignments: [], logRequests: [], offboarded: true, nextHeartbeatSeconds: 15 });
    const row = (await t.ctx.store.getDeviceByName('lab', 'off-1'))!;
    expect(row.offboardNotifiedAt).not.toBeNull();
    expect((await t.ctx.store.listAudit({ subject: `device:${body.spiffeId}` })).map((e) => e.action)).toEqual([
      'device.enrolled',
      'device.registered',
      'device.decommissioned',
      'device.offboard_notified',
    ]);

    for (const [method, req] of [
      ['Heartbeat', { installed: [] }],
      ['Register', REGISTER_REQUEST],
      ['ReportArtifactStatus', { assignmentId: 'x', state: 'FAILED', sequence: 9 }],
    ] as const) {
      const err = await grpcError(device.call(method, req));
      expect(err.code, method).toBe(grpc.status.PERMISSION_DENIED);
      expect(err.details, method).toContain('decommissioned');
    }
    const upload = await new Promise<grpc.ServiceError | null>((resolve) => {
      const stream = (device.raw as unknown as { UploadLogs: (cb: (e: grpc.ServiceError | null) => void) => grpc.ClientWritableStream<unknown> }).UploadLogs(resolve);
      stream.write({ logRequestId: crypto.randomUUID(), data: Buffer.from([0x1f, 0x8b, 0x08]) });
      stream.end();
    });
    expect(upload?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(upload?.details).toContain('decommissioned');

    const artifacts = await httpsGet(t.server.artifactsUrl, `${TUF_METADATA_PREFIX}1.root.json`, tls);
    expect(artifacts.status).toBe(403);
    const renewal = await renew((await makeCsr()).csrPem, tls);
    expect(renewal.status).toBe(403);
    expect(renewal.json.code).toBe('MESH_ERR_DEVICE_DECOMMISSIONED');
    // The record and its history stay.
    expect(await t.ctx.store.getDeviceByName('lab', 'off-1')).toMatchObject({ id: row.id, registeredAt: row.registeredAt });
  });

  it('always refuses Register from a decommissioned device, without using up its one offboarded heartbeat', async () => {
    const { client: device } = await enrolled('off-2');
    await device.call('Register', REGISTER_REQUEST);
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'off-2' });
    const err = await grpcError(device.call('Register', REGISTER_REQUEST));
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(await device.call('Heartbeat', { installed: [] })).toMatchObject({ offboarded: true });
  });

  it('tells a device decommissioned before it ever registered that it is offboarded', async () => {
    const { client: device } = await enrolled('off-3');
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'off-3' });
    expect(await device.call('Heartbeat', { installed: [] })).toMatchObject({ offboarded: true, assignments: [] });
    expect((await grpcError(device.call('Heartbeat', { installed: [] }))).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('tells exactly one of two simultaneous heartbeats that the device is offboarded', async () => {
    const { client: device } = await enrolled('off-4');
    await device.call('Register', REGISTER_REQUEST);
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'off-4' });
    const results = await Promise.allSettled([device.call('Heartbeat', { installed: [] }), device.call('Heartbeat', { installed: [] })]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
  });
});
