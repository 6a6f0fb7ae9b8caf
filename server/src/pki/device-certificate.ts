import * as crypto from 'node:crypto';
import { deviceSpiffeId, type DeviceIdentity } from '@meshanics/core/contract';
import { MeshError } from '../errors.js';
import type { DeviceCa } from './device-ca.js';
import { CLOCK_SKEW_MS, DAY_MS, ECDSA_SHA256, importPublicKey, randomSerialNumber, x509 } from './x509.js';

import { DEFAULT_DEVICE_CERT_DAYS } from '../defaults.js';

export { DEFAULT_DEVICE_CERT_DAYS };
export const MAX_DEVICE_CERT_DAYS = 397;

export interface IssuedCertificate {
  certPem: string;
  spiffeId: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
}

export interface CertificateValidity {
  days?: number;
  now?: Date;
}

/**
 * Issues a device leaf certificate binding `publicKey` to `spiffe://<td>/fleet/<f>/device/<n>`.
 * The key pair's origin is the caller's business (today the CLI generates it; enrollment by
 * CSR will pass the CSR's key), so the private key never has to reach this function.
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
  const days = validity.days ?? DEFAULT_DEVICE_CERT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DEVICE_CERT_DAYS) {
    throw new MeshError('MESH_ERR_PKI_INVALID_VALIDITY', `validity must be 1-${MAX_DEVICE_CERT_DAYS} days, got ${days}`);
  }
  const keyObject = typeof publicKey === 'string' ? crypto.createPublicKey(publicKey) : publicKey;
  if (keyObject.asymmetricKeyType !== 'ec' || keyObject.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new MeshError('MESH_ERR_PKI_UNSUPPORTED_KEY', 'device keys must be ECDSA P-256');
  }
  const now = validity.now ?? new Date();
  const subjectKey = await importPublicKey(keyObject);
  const serialNumber = randomSerialNumber();
  const notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  const notAfter = new Date(now.getTime() + days * DAY_MS);
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
  };
}
