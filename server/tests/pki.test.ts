import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir, type InitializedDataDir } from '../src/config/data-dir.js';
import { isMeshError } from '../src/errors.js';
import { deviceFromCertificate, issueDeviceCertificate } from '../src/pki/index.js';
import { tempDir } from './helpers.js';

let ctx: InitializedDataDir;
let dataDir: string;

beforeAll(async () => {
  dataDir = tempDir();
  ctx = await initDataDir({ dataDir, trustDomain: 'example.org' });
});
afterAll(() => ctx.close());

function keyPair() {
  return crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

describe('device CA', () => {
  it('creates a P-256 CA, a server certificate and private files with mode 0600 on first start', async () => {
    const ca = new crypto.X509Certificate(fs.readFileSync(ctx.layout.caCertFile));
    expect(ca.ca).toBe(true);
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    for (const file of [ctx.layout.caKeyFile, ctx.layout.serverKeyFile]) {
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    }
    const server = new crypto.X509Certificate(ctx.serverTls.certPem);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
  });

  it('is idempotent, keeps its trust domain and adds requested hostnames to a re-issued server certificate', async () => {
    const before = fs.readFileSync(ctx.layout.caCertFile, 'utf8');
    const again = await initDataDir({ dataDir, hostnames: ['ota.example.org', '10.1.2.3'] });
    try {
      expect(fs.readFileSync(ctx.layout.caCertFile, 'utf8')).toBe(before);
      expect(again.trustDomain).toBe('example.org');
      const server = new crypto.X509Certificate(again.serverTls.certPem);
      expect(server.checkHost('ota.example.org')).toBe('ota.example.org');
      expect(server.checkIP('10.1.2.3')).toBe('10.1.2.3');
    } finally {
      await again.close();
    }
    await expect(initDataDir({ dataDir, trustDomain: 'other.org' })).rejects.toMatchObject({
      code: 'MESH_ERR_CONFIG_TRUST_DOMAIN_MISMATCH',
    });
  });

  it('issues a device certificate whose only identity is its SPIFFE URI SAN, for client auth, valid 30 days', async () => {
    const ca = await ctx.deviceCa();
    const { publicKey } = keyPair();
    const issued = await issueDeviceCertificate(ca, publicKey, { trustDomain: 'example.org', fleet: 'lab', name: 'cam-7' });
    const cert = new crypto.X509Certificate(issued.certPem);
    expect(cert.subjectAltName).toBe('URI:spiffe://example.org/fleet/lab/device/cam-7');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.ca).toBe(false);
    expect(cert.verify(new crypto.X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.publicKey.export({ type: 'spki', format: 'der' })).toEqual(publicKey.export({ type: 'spki', format: 'der' }));
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);
    expect(deviceFromCertificate(cert.raw, 'example.org')).toMatchObject({ fleet: 'lab', name: 'cam-7' });
    expect(deviceFromCertificate(cert.raw, 'meshanics.local')).toBeUndefined();
  });

  it('refuses identities that are not DNS labels, out-of-range validity and keys other than P-256, P-384 and Ed25519', async () => {
    const ca = await ctx.deviceCa();
    const { publicKey } = keyPair();
    const id = { trustDomain: 'example.org', fleet: 'lab', name: 'cam' };
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => (isMeshError(e) ? e.code : String(e)),
      );
    expect(await codeOf(issueDeviceCertificate(ca, publicKey, { ...id, name: 'Cam/../x' }))).toBe('MESH_ERR_PKI_INVALID_IDENTITY');
    expect(await codeOf(issueDeviceCertificate(ca, publicKey, id, { days: 0 }))).toBe('MESH_ERR_PKI_INVALID_VALIDITY');
    expect(await codeOf(issueDeviceCertificate(ca, publicKey, id, { seconds: 0 }))).toBe('MESH_ERR_PKI_INVALID_VALIDITY');
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    expect(await codeOf(issueDeviceCertificate(ca, rsa, id))).toBe('MESH_ERR_PKI_UNSUPPORTED_KEY');
    const k1 = crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey;
    expect(await codeOf(issueDeviceCertificate(ca, k1, id))).toBe('MESH_ERR_PKI_UNSUPPORTED_KEY');
    expect(await codeOf(issueDeviceCertificate(ca, crypto.generateKeyPairSync('ed25519').publicKey, id))).toBe('ok');
    expect(await codeOf(issueDeviceCertificate(ca, crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey, id))).toBe('ok');
  });

  it('issues short-lived certificates with seconds precision, backdated by at most a tenth of their lifetime', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const short = await issueDeviceCertificate(await ctx.deviceCa(), keyPair().publicKey, { trustDomain: 'example.org', fleet: 'lab', name: 'cam' }, { seconds: 90, now });
    expect(short.notAfter).toBe('2030-01-01T00:01:30.000Z');
    expect(short.notBefore).toBe('2029-12-31T23:59:51.000Z');
    const long = await issueDeviceCertificate(await ctx.deviceCa(), keyPair().publicKey, { trustDomain: 'example.org', fleet: 'lab', name: 'cam' }, { days: 30, now });
    expect(long.notBefore).toBe('2029-12-31T23:55:00.000Z');
  });
});
