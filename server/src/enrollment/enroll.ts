// enrollment/ owns how a device joins and stays enrolled: enrollment tokens (tokens.ts), enrollment and renewal as
// checks plus one transaction (this file) and the HTTPS endpoint /enroll/v1/{enroll,renew} (http.ts).
// May import: pki/ (CSR, certificates, peer identity), store/ (types), config/, observability/, ../errors.ts,
// @meshanics/core/contract. Never api/, device-api/, fleet/ or server.ts.
//
// Enrollment and renewal, independent of HTTP: the checks, their order, the one transaction
// that makes a device, and the audit trail of every success and refusal.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { isDnsLabel } from '@meshanics/core/contract';
import type { MeshanicsContext } from '../config/data-dir.js';
import { isMeshError, MeshError, type ErrorCode } from '../errors.js';
import { verifyCsr } from '../pki/csr.js';
import { issueDeviceCertificate, issuedCertificateRecord, type CertificateValidity, type IssuedCertificate } from '../pki/device-certificate.js';
import { deviceFromCertificate } from '../pki/peer-identity.js';
import { spkiSha256 } from '../pki/x509.js';
import type { EnrollmentTokenRecord } from '../store/index.js';
import { enrollmentTokenStatus, hashEnrollmentToken } from './tokens.js';

/** What a device needs to run, minus where to connect (the endpoint adds that). */
export interface EnrollmentBundle {
  fleet: string;
  name: string;
  spiffeId: string;
  /** The device certificate, PEM. */
  certificate: string;
  serialNumber: string;
  /** The device CA certificate, PEM: the device's trust anchor for the server's TLS. */
  caBundle: string;
  /** Exact bytes of the newest N.root.json: the device's TUF trust anchor. */
  tufRoot: string;
  notBefore: string;
  notAfter: string;
}

export interface EnrollDeviceInput {
  token: string;
  name: string;
  csrPem: string;
  validity?: CertificateValidity;
  /** Where the request came from (e.g. the peer IP), for the audit trail. */
  origin?: string;
}

export interface RenewCertificateInput {
  /**
   * DER of the client certificate the caller presented, ALREADY verified against the device CA
   * (chain and validity) by the TLS layer; this function only reads the identity it asserts.
   */
  certificateDer: Buffer;
  csrPem: string;
  validity?: CertificateValidity;
  origin?: string;
}

/** The refusals enrollment audits: everything a requester can cause, nothing internal. */
const ENROLL_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'MESH_ERR_ENROLL_TOKEN_UNKNOWN',
  'MESH_ERR_ENROLL_TOKEN_REVOKED',
  'MESH_ERR_ENROLL_TOKEN_EXPIRED',
  'MESH_ERR_ENROLL_TOKEN_EXHAUSTED',
  'MESH_ERR_ENROLL_INVALID_NAME',
  'MESH_ERR_ENROLL_NAME_MISMATCH',
  'MESH_ERR_ENROLL_NAME_TAKEN',
  'MESH_ERR_ENROLL_CSR_INVALID',
  'MESH_ERR_ENROLL_CSR_SIGNATURE',
  'MESH_ERR_ENROLL_UNSUPPORTED_KEY',
  'MESH_ERR_ENROLL_KEY_REUSED',
  'MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED',
  'MESH_ERR_ENROLL_DEVICE_UNKNOWN',
  'MESH_ERR_DEVICE_DECOMMISSIONED',
]);

/** Requester-supplied text goes into the audit trail bounded, so it cannot bloat it. */
const clip = (s: string): string => (s.length > 64 ? `${s.slice(0, 64)}…` : s);

function assertTokenUsable(token: EnrollmentTokenRecord, now: Date): void {
  switch (enrollmentTokenStatus(token, now)) {
    case 'revoked':
      throw new MeshError('MESH_ERR_ENROLL_TOKEN_REVOKED', 'enrollment token has been revoked');
    case 'expired':
      throw new MeshError('MESH_ERR_ENROLL_TOKEN_EXPIRED', `enrollment token expired at ${token.expiresAt}`);
    case 'exhausted':
      throw new MeshError('MESH_ERR_ENROLL_TOKEN_EXHAUSTED', `enrollment token has no uses left (all ${token.usesTotal} used)`);
    case 'active':
      return;
  }
}

/**
 * Returns whether this is a re-enrollment. A live device's name is free again only for a
 * token the operator minted for that very name: that is how a device whose certificate
 * expired (it cannot renew) enrolls again and keeps its record and history.
 */
async function assertNameFree(ctx: MeshanicsContext, fleet: string, name: string, token: EnrollmentTokenRecord): Promise<boolean> {
  const existing = await ctx.store.getDeviceByName(fleet, name);
  if (!existing) return false;
  if (!existing.decommissionedAt && token.deviceName === name) return true;
  // A decommissioned device keeps its name: re-issuing that identity would revive every
  // certificate it still holds, and its history must stay unambiguous.
  throw new MeshError(
    'MESH_ERR_ENROLL_NAME_TAKEN',
    existing.decommissionedAt
      ? `device name "${name}" belonged to a decommissioned device in fleet "${fleet}" and cannot be reused`
      : `device name "${name}" is already taken in fleet "${fleet}"`,
  );
}

function bundle(ctx: MeshanicsContext, fleet: string, name: string, issued: IssuedCertificate): EnrollmentBundle {
  return {
    fleet,
    name,
    spiffeId: issued.spiffeId,
    certificate: issued.certPem,
    serialNumber: issued.serialNumber,
    caBundle: fs.readFileSync(ctx.layout.caCertFile, 'utf8'),
    tufRoot: ctx.tuf.latestRootBytes().toString('utf8'),
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
  };
}

/**
 * Enrolls a device: token (known, not revoked, not expired, uses left), name (DNS label, the
 * token's name if it fixes one), CSR (parses, signature verifies, supported key), name free in
 * the fleet; then one transaction consumes a use, creates the device, records the certificate
 * and audits. The certificate is signed just before that transaction (signing is async, SQLite
 * transactions are not) and is returned only if it commits: a refusal hands out nothing.
 */
export async function enrollDevice(ctx: MeshanicsContext, input: EnrollDeviceInput): Promise<EnrollmentBundle> {
  const origin = input.origin ?? 'unknown';
  let token: EnrollmentTokenRecord | undefined;
  try {
    token = await ctx.store.enrollmentTokens.getByHash(hashEnrollmentToken(input.token));
    if (!token) throw new MeshError('MESH_ERR_ENROLL_TOKEN_UNKNOWN', 'enrollment token is not known to this server');
    const { fleet } = token;
    assertTokenUsable(token, new Date());
    if (!isDnsLabel(input.name)) {
      throw new MeshError('MESH_ERR_ENROLL_INVALID_NAME', `device name "${clip(input.name)}" must be a DNS label: 1-63 of a-z, 0-9, "-", not starting or ending with "-"`);
    }
    if (token.deviceName !== null && token.deviceName !== input.name) {
      throw new MeshError('MESH_ERR_ENROLL_NAME_MISMATCH', `this enrollment token is for device "${token.deviceName}", not "${input.name}"`);
    }
    const csr = await verifyCsr(input.csrPem);
    await assertNameFree(ctx, fleet, input.name, token);

    const issued = await issueDeviceCertificate(await ctx.deviceCa(), csr.publicKey, { trustDomain: ctx.trustDomain, fleet, name: input.name }, input.validity ?? {});
    const tokenId = token.id;
    await ctx.store.withWriteLock(async () => {
      // Checked again under the lock: another enrollment may have taken the last use or the name.
      const now = new Date();
      const current = (await ctx.store.enrollmentTokens.get(tokenId))!;
      assertTokenUsable(current, now);
      const reenrollment = await assertNameFree(ctx, fleet, input.name, current);
      if (!(await ctx.store.enrollmentTokens.consumeUse(tokenId, now.toISOString()))) {
        throw new MeshError('MESH_ERR_ENROLL_TOKEN_EXHAUSTED', 'enrollment token has no uses left');
      }
      const { device } = await ctx.store.ensureDevice({ spiffeId: issued.spiffeId, fleet, name: input.name, now: now.toISOString() });
      await ctx.store.certificates.insert({ ...issuedCertificateRecord(issued, device.id, now.toISOString()), reason: 'enrollment', enrollmentTokenId: tokenId });
      await ctx.store.appendAudit({
        at: now.toISOString(),
        actor: `enrollment-token:${tokenId}`,
        action: reenrollment ? 'device.reenrolled' : 'device.enrolled',
        subject: `device:${issued.spiffeId}`,
        details: { origin, serialNumber: issued.serialNumber, notAfter: issued.notAfter, keyType: csr.keyType },
      });
    });
    ctx.logger.info({ device: issued.spiffeId, tokenId, serialNumber: issued.serialNumber, notAfter: issued.notAfter, origin }, 'device enrolled');
    return bundle(ctx, fleet, input.name, issued);
  } catch (err) {
    if (isMeshError(err) && ENROLL_REFUSALS.has(err.code)) {
      const subject = token ? `enrollment-token:${token.id}` : 'enrollment-token:unknown';
      await ctx.store.appendAudit({
        actor: `enrollment:${origin}`,
        action: 'device.enrollment_refused',
        subject,
        details: { code: err.code, reason: err.message, fleet: token?.fleet ?? null, name: clip(input.name), origin },
      });
      ctx.logger.warn({ code: err.code, reason: err.message, tokenId: token?.id, name: clip(input.name), origin }, 'enrollment refused');
    }
    throw err;
  }
}

/**
 * Issues a new certificate, for a new key, to the device a valid current certificate names.
 * The device record stays the same; older certificates stay valid until they expire.
 */
export async function renewDeviceCertificate(ctx: MeshanicsContext, input: RenewCertificateInput): Promise<EnrollmentBundle> {
  const origin = input.origin ?? 'unknown';
  const peer = deviceFromCertificate(input.certificateDer, ctx.trustDomain);
  if (!peer) {
    throw new MeshError('MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED', 'client certificate carries no device identity of this trust domain');
  }
  try {
    const device = await ctx.store.getDeviceBySpiffeId(peer.spiffeId);
    if (!device) throw new MeshError('MESH_ERR_ENROLL_DEVICE_UNKNOWN', 'no device record for this certificate; enroll first');
    if (device.decommissionedAt) throw new MeshError('MESH_ERR_DEVICE_DECOMMISSIONED', 'device is decommissioned and cannot renew');
    const csr = await verifyCsr(input.csrPem);
    const current = new crypto.X509Certificate(input.certificateDer);
    if (spkiSha256(csr.publicKey) === spkiSha256(current.publicKey)) {
      throw new MeshError('MESH_ERR_ENROLL_KEY_REUSED', 'renewal csr carries the current key; generate a new key pair');
    }
    const issued = await issueDeviceCertificate(await ctx.deviceCa(), csr.publicKey, peer, input.validity ?? {});
    await ctx.store.withWriteLock(async () => {
      const now = new Date().toISOString();
      // Decommissioning may have happened while we were signing.
      if ((await ctx.store.getDeviceById(device.id))!.decommissionedAt) {
        throw new MeshError('MESH_ERR_DEVICE_DECOMMISSIONED', 'device is decommissioned and cannot renew');
      }
      await ctx.store.certificates.insert({ ...issuedCertificateRecord(issued, device.id, now), reason: 'renewal', enrollmentTokenId: null });
      await ctx.store.appendAudit({
        at: now,
        actor: `device:${peer.spiffeId}`,
        action: 'device.certificate_renewed',
        subject: `device:${peer.spiffeId}`,
        details: { origin, serialNumber: issued.serialNumber, previousSerialNumber: current.serialNumber.toLowerCase(), notAfter: issued.notAfter, keyType: csr.keyType },
      });
    });
    ctx.logger.info({ device: peer.spiffeId, serialNumber: issued.serialNumber, notAfter: issued.notAfter, origin }, 'device certificate renewed');
    return bundle(ctx, peer.fleet, peer.name, issued);
  } catch (err) {
    if (isMeshError(err) && ENROLL_REFUSALS.has(err.code)) {
      await ctx.store.appendAudit({
        actor: `device:${peer.spiffeId}`,
        action: 'device.renewal_refused',
        subject: `device:${peer.spiffeId}`,
        details: { code: err.code, reason: err.message, origin },
      });
      ctx.logger.warn({ device: peer.spiffeId, code: err.code, reason: err.message, origin }, 'certificate renewal refused');
    }
    throw err;
  }
}
