import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';
import { CLOCK_SKEW_MS, DAY_MS, ECDSA_SHA256, generateP256KeyPair, importPublicKey, importSigningKey, randomSerialNumber, sameSpki, x509, type CryptoKey } from './x509.js';

export interface DeviceCa {
  certPem: string;
  cert: x509.X509Certificate;
  /** The CA's signing key; never leaves this process. */
  signingKey: CryptoKey;
  /** Subject key identifier, copied into every issued certificate's authority key identifier. */
  keyId: string;
}

export interface DeviceCaFiles {
  keyFile: string;
  certFile: string;
}

const CA_VALIDITY_DAYS = 3650;

/** Generates a self-signed ECDSA P-256 device CA (PEM) for `trustDomain`. */
export async function generateDeviceCa(trustDomain: string, now = new Date()): Promise<{ keyPem: string; certPem: string }> {
  const pair = generateP256KeyPair();
  const signingKey = await importSigningKey(pair.privateKeyPem);
  const publicKey = await importPublicKey(crypto.createPublicKey(pair.publicKeyPem));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: `CN=Meshanics Device CA, O=${trustDomain}`,
    issuer: `CN=Meshanics Device CA, O=${trustDomain}`,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    publicKey,
    signingKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      // pathLength 0: this CA signs leaves only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  return { keyPem: pair.privateKeyPem, certPem: cert.toString('pem') + '\n' };
}

/**
 * Creates the CA files unless they exist. The certificate is written last, so its presence
 * marks a complete CA; a key without a certificate is the leftover of a crashed first start.
 * Callers hold the data-dir write lock so two processes cannot both create a CA.
 */
export function writeDeviceCaIfMissing(files: DeviceCaFiles, generated: { keyPem: string; certPem: string }): boolean {
  if (fs.existsSync(files.certFile)) return false;
  writeFileAtomicSync(files.keyFile, generated.keyPem, { mode: PRIVATE_FILE_MODE });
  writeFileAtomicSync(files.certFile, generated.certPem, { mode: PUBLIC_FILE_MODE });
  return true;
}

export async function loadDeviceCa(files: DeviceCaFiles): Promise<DeviceCa> {
  let keyPem: string;
  let certPem: string;
  try {
    keyPem = fs.readFileSync(files.keyFile, 'utf8');
    certPem = fs.readFileSync(files.certFile, 'utf8');
  } catch (err) {
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `cannot read the device CA: ${(err as Error).message}`, { cause: err });
  }
  if (!sameSpki(crypto.createPublicKey(keyPem), crypto.createPublicKey(certPem))) {
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `device CA key ${files.keyFile} does not match ${files.certFile}`);
  }
  const cert = new x509.X509Certificate(certPem);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new MeshError('MESH_ERR_DATADIR_CORRUPT', 'device CA certificate has no subject key identifier');
  return { certPem, cert, signingKey: await importSigningKey(keyPem), keyId: ski.keyId };
}
