// Enrollment over the real HTTPS endpoint with real CSRs; every issued certificate is then
// used for real mTLS gRPC calls.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decommissionDevice } from '../src/fleet/devices.js';
import { createEnrollmentToken, revokeEnrollmentToken, listEnrollmentTokens } from '../src/enrollment/tokens.js';
import { ENROLL_PATH, MAX_ENROLL_BODY_BYTES, type EnrollmentResponse } from '../src/enrollment/http.js';
import {
  corruptCsrSignature,
  httpsRequest,
  makeCsr,
  postJson,
  REGISTER_REQUEST,
  startDeviceTestServer,
  swapCsrPublicKey,
  type TestKeyType,
  type DeviceTestServer,
} from './helpers.js';

let t: DeviceTestServer;
let caPem: string;

beforeAll(async () => {
  t = await startDeviceTestServer();
  caPem = t.caPem;
});
afterAll(() => t.close());

interface ErrorBody {
  error: string;
  code: string;
}

function enroll(body: Record<string, unknown>) {
  return postJson<EnrollmentResponse & ErrorBody>(t.server.enrollUrl, ENROLL_PATH, body, { caPem });
}

function token(fleet: string, options: { uses?: number; deviceName?: string; expiresInSeconds?: number; now?: Date } = {}) {
  return createEnrollmentToken(t.ctx, { fleet, ...options });
}

/** Nothing issued: no device row, no certificate recorded, and the refusal is in the audit trail. */
async function expectRefusedAndAudited(fleet: string, name: string, code: string, tokenId?: string) {
  expect(await t.ctx.store.getDeviceByName(fleet, name)).toBeUndefined();
  const refusals = (await t.ctx.store.listAudit({ action: 'device.enrollment_refused' })).filter((e) => e.details.code === code && e.details.name === name);
  expect(refusals.length, `audit event for ${code}`).toBeGreaterThan(0);
  expect(refusals.at(-1)!.subject).toBe(tokenId ? `enrollment-token:${tokenId}` : 'enrollment-token:unknown');
  expect(String(refusals.at(-1)!.details.reason)).not.toBe('');
}

describe('POST /enroll/v1/enroll', () => {
  it('enrolls a device: a 30-day clientAuth certificate with the SPIFFE SAN, the CA, the exact TUF root and where to connect', async () => {
    const tok = await token('lab');
    const device = await makeCsr('p256', 'CN=whatever-the-device-asks-for');
    const res = await enroll({ token: tok.token, name: 'cam-1', csr: device.csrPem });
    expect(res.status).toBe(200);
    const body = res.json;
    expect(body).toMatchObject({
      fleet: 'lab',
      name: 'cam-1',
      spiffeId: 'spiffe://meshanics.local/fleet/lab/device/cam-1',
      caBundle: caPem,
      deviceApi: t.server.grpcAddress,
      artifactServer: t.server.artifactsUrl,
    });
    expect(body.tufRoot).toBe(t.ctx.tuf.latestRootBytes().toString('utf8'));

    const cert = new crypto.X509Certificate(body.certificate);
    expect(cert.subjectAltName).toBe('URI:spiffe://meshanics.local/fleet/lab/device/cam-1');
    expect(cert.checkIssued(new crypto.X509Certificate(caPem))).toBe(true);
    expect(cert.publicKey.export({ type: 'spki', format: 'der' }).equals(device.spki)).toBe(true);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(Math.abs(Date.parse(cert.validTo) - Date.parse(body.notAfter))).toBeLessThan(1000);
    const days = (Date.parse(body.notAfter) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);

    const reg = await t.client({ keyPem: device.keyPem, certPem: body.certificate }).call('Register', REGISTER_REQUEST);
    expect(reg).toEqual({ deviceName: 'cam-1', fleet: 'lab', heartbeatIntervalSeconds: 15 });

    const row = (await t.ctx.store.getDeviceByName('lab', 'cam-1'))!;
    expect(await t.ctx.store.certificates.listForDevice(row.id)).toMatchObject([{ reason: 'enrollment', enrollmentTokenId: tok.id }]);
    expect((await t.ctx.store.listAudit({ subject: `device:${body.spiffeId}` })).map((e) => e.action)).toEqual(['device.enrolled', 'device.registered']);
    expect((await listEnrollmentTokens(t.ctx, { fleet: 'lab' })).find((v) => v.id === tok.id)).toMatchObject({ usesLeft: 0, status: 'exhausted' });
  });

  it.each<TestKeyType>(['p384', 'ed25519'])('enrolls a %s key too, and that certificate works for mTLS', async (type) => {
    const device = await makeCsr(type);
    const res = await enroll({ token: (await token('lab')).token, name: `key-${type}`, csr: device.csrPem });
    expect(res.status).toBe(200);
    const reg = await t.client({ keyPem: device.keyPem, certPem: res.json.certificate }).call('Register', REGISTER_REQUEST);
    expect(reg).toMatchObject({ deviceName: `key-${type}` });
  });

  it('refuses a token past its budget with 401 TOKEN_EXHAUSTED, audits it and issues nothing', async () => {
    const tok = await token('lab', { uses: 2 });
    expect((await enroll({ token: tok.token, name: 'budget-1', csr: (await makeCsr()).csrPem })).status).toBe(200);
    expect((await enroll({ token: tok.token, name: 'budget-2', csr: (await makeCsr()).csrPem })).status).toBe(200);
    const res = await enroll({ token: tok.token, name: 'budget-3', csr: (await makeCsr()).csrPem });
    expect(res.status).toBe(401);
    expect(res.json).toEqual({ code: 'MESH_ERR_ENROLL_TOKEN_EXHAUSTED', error: 'enrollment token has no uses left (all 2 used)' });
    await expectRefusedAndAudited('lab', 'budget-3', 'MESH_ERR_ENROLL_TOKEN_EXHAUSTED', tok.id);
  });

  it('lets exactly one of two simultaneous enrollments spend the last use of a token', async () => {
    const tok = await token('lab');
    const [a, b] = await Promise.all([
      makeCsr().then(async (d) => await enroll({ token: tok.token, name: 'race-a', csr: d.csrPem })),
      makeCsr().then(async (d) => await enroll({ token: tok.token, name: 'race-b', csr: d.csrPem })),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 401]);
    const loser = a.status === 401 ? 'race-a' : 'race-b';
    expect(await t.ctx.store.getDeviceByName('lab', loser)).toBeUndefined();
    expect((await t.ctx.store.enrollmentTokens.get(tok.id))!.usesLeft).toBe(0);
  });

  it('refuses an expired token with 401 TOKEN_EXPIRED and issues nothing', async () => {
    const tok = await token('lab', { expiresInSeconds: 60, now: new Date(Date.now() - 3600_000) });
    const res = await enroll({ token: tok.token, name: 'late-1', csr: (await makeCsr()).csrPem });
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('MESH_ERR_ENROLL_TOKEN_EXPIRED');
    expect(res.json.error).toContain('expired at');
    await expectRefusedAndAudited('lab', 'late-1', 'MESH_ERR_ENROLL_TOKEN_EXPIRED', tok.id);
  });

  it('refuses a revoked token with 401 TOKEN_REVOKED and issues nothing', async () => {
    const tok = await token('lab');
    await revokeEnrollmentToken(t.ctx, tok.id, 'operator:test');
    const res = await enroll({ token: tok.token, name: 'revoked-1', csr: (await makeCsr()).csrPem });
    expect(res.status).toBe(401);
    expect(res.json).toEqual({ code: 'MESH_ERR_ENROLL_TOKEN_REVOKED', error: 'enrollment token has been revoked' });
    await expectRefusedAndAudited('lab', 'revoked-1', 'MESH_ERR_ENROLL_TOKEN_REVOKED', tok.id);
    expect((await t.ctx.store.enrollmentTokens.get(tok.id))!.usesLeft).toBe(1);
  });

  it('refuses a token it never issued with 401 TOKEN_UNKNOWN', async () => {
    const res = await enroll({ token: 'mesh_enr_' + crypto.randomBytes(32).toString('base64url'), name: 'nobody-1', csr: (await makeCsr()).csrPem });
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('MESH_ERR_ENROLL_TOKEN_UNKNOWN');
    await expectRefusedAndAudited('lab', 'nobody-1', 'MESH_ERR_ENROLL_TOKEN_UNKNOWN');
  });

  it('refuses a CSR whose signature does not match its public key (swapped key, flipped bit) without spending the token', async () => {
    const tok = await token('lab');
    const device = await makeCsr();
    const swapped = await enroll({ token: tok.token, name: 'pop-1', csr: swapCsrPublicKey(device, await makeCsr()) });
    expect(swapped.status).toBe(400);
    expect(swapped.json.code).toBe('MESH_ERR_ENROLL_CSR_SIGNATURE');
    expect(swapped.json.error).toContain('proof of possession');
    const flipped = await enroll({ token: tok.token, name: 'pop-1', csr: corruptCsrSignature(device.csrPem) });
    expect(flipped.status).toBe(400);
    expect(flipped.json.code).toBe('MESH_ERR_ENROLL_CSR_SIGNATURE');
    await expectRefusedAndAudited('lab', 'pop-1', 'MESH_ERR_ENROLL_CSR_SIGNATURE', tok.id);
    // The token is untouched: the genuine CSR still enrolls with it.
    expect((await t.ctx.store.enrollmentTokens.get(tok.id))!.usesLeft).toBe(1);
    expect((await enroll({ token: tok.token, name: 'pop-1', csr: device.csrPem })).status).toBe(200);
  });

  it('refuses an unparsable CSR and an RSA key with 400', async () => {
    const tok = await token('lab');
    const garbage = await enroll({ token: tok.token, name: 'csr-1', csr: 'hello' });
    expect(garbage.status).toBe(400);
    expect(garbage.json.code).toBe('MESH_ERR_ENROLL_CSR_INVALID');
    const rsa = await enroll({ token: tok.token, name: 'csr-1', csr: (await makeCsr('rsa')).csrPem });
    expect(rsa.status).toBe(400);
    expect(rsa.json.code).toBe('MESH_ERR_ENROLL_UNSUPPORTED_KEY');
    expect(rsa.json.error).toContain('rsa');
    await expectRefusedAndAudited('lab', 'csr-1', 'MESH_ERR_ENROLL_UNSUPPORTED_KEY', tok.id);
  });

  it('refuses a name already taken in the fleet with 409, also when its device was decommissioned', async () => {
    const first = await enroll({ token: (await token('lab')).token, name: 'dup-1', csr: (await makeCsr()).csrPem });
    expect(first.status).toBe(200);
    const tok = await token('lab');
    const taken = await enroll({ token: tok.token, name: 'dup-1', csr: (await makeCsr()).csrPem });
    expect(taken.status).toBe(409);
    expect(taken.json).toEqual({ code: 'MESH_ERR_ENROLL_NAME_TAKEN', error: 'device name "dup-1" is already taken in fleet "lab"' });
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'dup-1' });
    const gone = await enroll({ token: tok.token, name: 'dup-1', csr: (await makeCsr()).csrPem });
    expect(gone.status).toBe(409);
    expect(gone.json.error).toContain('decommissioned');
    expect((await t.ctx.store.enrollmentTokens.get(tok.id))!.usesLeft).toBe(1);
    const row = (await t.ctx.store.getDeviceByName('lab', 'dup-1'))!;
    expect(await t.ctx.store.certificates.listForDevice(row.id)).toHaveLength(1);
    // Same name in another fleet is another device.
    expect((await enroll({ token: (await token('other')).token, name: 'dup-1', csr: (await makeCsr()).csrPem })).status).toBe(200);
  });

  it('re-enrolls a live device (an expired certificate cannot renew) only with a token minted for its name, keeping its record', async () => {
    const first = await enroll({ token: (await token('lab')).token, name: 'again-1', csr: (await makeCsr()).csrPem });
    expect(first.status).toBe(200);
    const before = (await t.ctx.store.getDeviceByName('lab', 'again-1'))!;
    const anyName = await enroll({ token: (await token('lab')).token, name: 'again-1', csr: (await makeCsr()).csrPem });
    expect(anyName.status).toBe(409);
    const again = await enroll({ token: (await token('lab', { deviceName: 'again-1' })).token, name: 'again-1', csr: (await makeCsr()).csrPem });
    expect(again.status).toBe(200);
    const after = (await t.ctx.store.getDeviceByName('lab', 'again-1'))!;
    expect(after.id).toBe(before.id);
    expect(await t.ctx.store.certificates.listForDevice(after.id)).toHaveLength(2);
    expect((await t.ctx.store.listAudit({ action: 'device.reenrolled' })).some((e) => e.subject.endsWith('/device/again-1'))).toBe(true);
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'again-1' });
    const decommissioned = await enroll({ token: (await token('lab', { deviceName: 'again-1' })).token, name: 'again-1', csr: (await makeCsr()).csrPem });
    expect(decommissioned.status).toBe(409);
  });

  it('refuses a name that is not a DNS label, or not the one the token is bound to, with 400', async () => {
    const tok = await token('lab', { deviceName: 'fixed-1' });
    const bad = await enroll({ token: tok.token, name: 'Bad_Name', csr: (await makeCsr()).csrPem });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('MESH_ERR_ENROLL_INVALID_NAME');
    await expectRefusedAndAudited('lab', 'Bad_Name', 'MESH_ERR_ENROLL_INVALID_NAME', tok.id);
    const other = await enroll({ token: tok.token, name: 'other-1', csr: (await makeCsr()).csrPem });
    expect(other.status).toBe(400);
    expect(other.json).toEqual({ code: 'MESH_ERR_ENROLL_NAME_MISMATCH', error: 'this enrollment token is for device "fixed-1", not "other-1"' });
    await expectRefusedAndAudited('lab', 'other-1', 'MESH_ERR_ENROLL_NAME_MISMATCH', tok.id);
    expect((await enroll({ token: tok.token, name: 'fixed-1', csr: (await makeCsr()).csrPem })).status).toBe(200);
  });

  it('answers 404 for unknown paths, 405 for GET, 413 for a body over 64 KiB and 400 for a body that is not the JSON object', async () => {
    const tls = { caPem };
    const missing = await httpsRequest('POST', t.server.enrollUrl, '/enroll/v2/enroll', tls, {}, '{}');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body.toString()).code).toBe('MESH_ERR_ENROLL_NOT_FOUND');
    const get = await httpsRequest('GET', t.server.enrollUrl, ENROLL_PATH, tls);
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect(JSON.parse(get.body.toString()).code).toBe('MESH_ERR_ENROLL_METHOD_NOT_ALLOWED');
    const big = await httpsRequest('POST', t.server.enrollUrl, ENROLL_PATH, tls, {}, JSON.stringify({ csr: 'x'.repeat(MAX_ENROLL_BODY_BYTES) }));
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body.toString()).code).toBe('MESH_ERR_ENROLL_BODY_TOO_LARGE');
    for (const body of ['not json', '[]', JSON.stringify({ token: 'x', name: 'y' })]) {
      const res = await httpsRequest('POST', t.server.enrollUrl, ENROLL_PATH, tls, {}, body);
      expect(res.status, body).toBe(400);
      expect(JSON.parse(res.body.toString()).code).toBe('MESH_ERR_ENROLL_BAD_REQUEST');
    }
  });

  it('keeps only the sha256 of a token: the database never contains the token text', async () => {
    const tok = await token('lab');
    const db = fs.readFileSync(t.ctx.layout.databaseFile);
    const wal = fs.existsSync(`${t.ctx.layout.databaseFile}-wal`) ? fs.readFileSync(`${t.ctx.layout.databaseFile}-wal`) : Buffer.alloc(0);
    expect(db.includes(tok.token) || wal.includes(tok.token)).toBe(false);
    expect((await t.ctx.store.enrollmentTokens.get(tok.id))!.tokenSha256).toBe(crypto.createHash('sha256').update(tok.token).digest('hex'));
  });
});
