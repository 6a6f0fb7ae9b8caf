import * as crypto from 'node:crypto';
import { deviceSpiffeId, type DeviceIdentity } from '@meshanics/core/contract';
import { MeshError } from '../errors.js';
import type { DeviceCa } from './device-ca.js';
import { CLOCK_SKEW_MS, deviceKeyType, ECDSA_SHA256, importPublicKey, randomSerialNumber, spkiSha256, x509 } from './x509.js';

import { DEFAULT_DEVICE_CERT_DAYS } from '../config/defaults.js';

export { DEFAULT_DEVICE_CERT_DAYS };
export const MAX_DEVICE_CERT_DAYS = 397;

export interface IssuedCertificate {
  certPem: string;
  spiffeId: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  /** sha256 (hex) of the subject's DER SubjectPublicKeyInfo. */
  publicKeySha256: string;
}

/** `seconds` wins over `days`; seconds precision exists for tests that exercise renewal. */
export interface CertificateValidity {
  days?: number;
  seconds?: number;
  now?: Date;
}

const DAY_SECONDS = 86_400;
const MAX_VALIDITY_SECONDS = MAX_DEVICE_CERT_DAYS * DAY_SECONDS;

function validitySeconds(validity: CertificateValidity): number {
  if (validity.seconds !== undefined) {
    const s = validity.seconds;
    if (!Number.isInteger(s) || s < 1 || s > MAX_VALIDITY_SECONDS) {
      throw new MeshError('MESH_ERR_PKI_INVALID_VALIDITY', `validity must be 1-${MAX_VALIDITY_SECONDS} seconds, got ${s}`);
    }
    return s;
  }
  const days = validity.days ?? DEFAULT_DEVICE_CERT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DEVICE_CERT_DAYS) {
    throw new MeshError('MESH_ERR_PKI_INVALID_VALIDITY', `validity must be 1-${MAX_DEVICE_CERT_DAYS} days, got ${days}`);
  }
  return days * DAY_SECONDS;
}

/**
 * What the store records of a certificate issued to device `deviceId` at `issuedAt` (the fields
 * of store/store.ts's DeviceCertificateRecord that come from the certificate); the caller adds
 * why it was issued (`reason`, `enrollmentTokenId`). Enrollment, renewal and `device issue-cert`
 * record their certificates alike.
 */
export function issuedCertificateRecord(
  issued: IssuedCertificate,
  deviceId: string,
  issuedAt: string,
): { serialNumber: string; deviceId: string; publicKeySha256: string; notBefore: string; notAfter: string; issuedAt: string } {
  return { serialNumber: issued.serialNumber, deviceId, publicKeySha256: issued.publicKeySha256, notBefore: issued.notBefore, notAfter: issued.notAfter, issuedAt };
}

/**
 * Issues a device leaf certificate binding `publicKey` to `spiffe://<td>/fleet/<f>/device/<n>`.
 * The key pair's origin is the caller's business (enrollment and renewal pass a verified CSR's
 * key; `device issue-cert` generates one), so no private key ever has to reach this function.
 */
export async function issueDeviceCertificate(
  ca: DeviceCa,
  publicKey: crypto.KeyObject | string,
  identity: DeviceIdentity,
  validity: CertificateValidity = {},
): Promise<IssuedCertificate> {
  let spiffeId: string;
  try {
    spiffeId = deviceSpiffeId(identity);
  } catch (err) {
    throw new MeshError('MESH_ERR_PKI_INVALID_IDENTITY', (err as Error).message, { cause: err });
  }
  const lifetimeMs = validitySeconds(validity) * 1000;
  const keyObject = typeof publicKey === 'string' ? crypto.createPublicKey(publicKey) : publicKey;
  if (!deviceKeyType(keyObject)) {
    throw new MeshError('MESH_ERR_PKI_UNSUPPORTED_KEY', 'device keys must be ECDSA P-256, ECDSA P-384 or Ed25519');
  }
  const now = validity.now ?? new Date();
  const subjectKey = await importPublicKey(keyObject);
  const serialNumber = randomSerialNumber();
  // Backdated for clock skew, but by at most a tenth of the lifetime: agents renew at two
  // thirds of notBefore..notAfter, and a 90 s test certificate backdated by 5 minutes would
  // look overdue the moment it is issued.
  const notBefore = new Date(now.getTime() - Math.min(CLOCK_SKEW_MS, Math.floor(lifetimeMs / 10)));
  const notAfter = new Date(now.getTime() + lifetimeMs);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${identity.name}, OU=${identity.fleet}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey: subjectKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      // The identity: exactly one URI SAN, as an X.509-SVID carries.
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
      await x509.SubjectKeyIdentifierExtension.create(subjectKey),
      new x509.AuthorityKeyIdentifierExtension(ca.keyId),
    ],
  });
  return {
    certPem: cert.toString('pem') + '\n',
    spiffeId,
    serialNumber,
    notBefore: notBefore.toISOString(),
    notAfter: notAfter.toISOString(),
    publicKeySha256: spkiSha256(keyObject),
  };
}
