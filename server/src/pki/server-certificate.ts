import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import type { DeviceCa } from './device-ca.js';
import { CLOCK_SKEW_MS, DAY_MS, ECDSA_SHA256, generateP256KeyPair, importPublicKey, randomSerialNumber, sameSpki, x509 } from './x509.js';

export const DEFAULT_SERVER_NAMES = ['127.0.0.1', '::1', 'localhost'] as const;
const SERVER_CERT_DAYS = 365;
/** Re-issue at startup when less than this is left, so a long-running server never serves an expired cert. */
const SERVER_CERT_RENEW_BEFORE_DAYS = 30;

export interface ServerCertificateFiles {
  keyFile: string;
  certFile: string;
}

export interface ServerTlsMaterial {
  keyPem: string;
  certPem: string;
}

function sanEntries(hostnames: readonly string[]): { type: 'ip' | 'dns'; value: string }[] {
  const names = [...new Set([...DEFAULT_SERVER_NAMES, ...hostnames])];
  return names.map((value) => ({ type: net.isIP(value) ? 'ip' : 'dns', value }));
}

/** Node renders IP SANs as "IP Address:127.0.0.1" and IPv6 in full form; compare through net. */
function coversNames(certPem: string, hostnames: readonly string[]): boolean {
  const cert = new crypto.X509Certificate(certPem);
  return [...DEFAULT_SERVER_NAMES, ...hostnames].every((name) => (net.isIP(name) ? cert.checkIP(name) !== undefined : cert.checkHost(name) !== undefined));
}

function needsNewCertificate(files: ServerCertificateFiles, ca: DeviceCa, hostnames: readonly string[], now: Date): boolean {
  if (!fs.existsSync(files.keyFile) || !fs.existsSync(files.certFile)) return true;
  const keyPem = fs.readFileSync(files.keyFile, 'utf8');
  const certPem = fs.readFileSync(files.certFile, 'utf8');
  const cert = new crypto.X509Certificate(certPem);
  if (!sameSpki(crypto.createPublicKey(keyPem), cert.publicKey)) return true;
  if (!cert.verify(crypto.createPublicKey(ca.certPem))) return true;
  if (new Date(cert.validTo).getTime() - now.getTime() < SERVER_CERT_RENEW_BEFORE_DAYS * DAY_MS) return true;
  return !coversNames(certPem, hostnames);
}

export async function generateServerCertificate(ca: DeviceCa, hostnames: readonly string[], now = new Date()): Promise<ServerTlsMaterial> {
  const pair = generateP256KeyPair();
  const publicKey = await importPublicKey(crypto.createPublicKey(pair.publicKeyPem));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: 'CN=meshanics-server',
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + SERVER_CERT_DAYS * DAY_MS),
    publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sanEntries(hostnames)),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      new x509.AuthorityKeyIdentifierExtension(ca.keyId),
    ],
  });
  return { keyPem: pair.privateKeyPem, certPem: cert.toString('pem') + '\n' };
}

/**
 * Ensures a server certificate for the requested names exists, re-issuing it when it is
 * missing, torn (key and cert from different runs), close to expiry or lacks a name.
 * Generation is async, the check-and-write is not: `lock` runs the write under the data-dir lock.
 */
export async function ensureServerCertificate(
  files: ServerCertificateFiles,
  ca: DeviceCa,
  hostnames: readonly string[],
  lock: <T>(fn: () => T) => Promise<T>,
  now = new Date(),
): Promise<{ material: ServerTlsMaterial; issued: boolean }> {
  let issued = false;
  if (needsNewCertificate(files, ca, hostnames, now)) {
    const fresh = await generateServerCertificate(ca, hostnames, now);
    issued = await lock(() => {
      if (!needsNewCertificate(files, ca, hostnames, now)) return false;
      writeFileAtomicSync(files.keyFile, fresh.keyPem, { mode: PRIVATE_FILE_MODE });
      writeFileAtomicSync(files.certFile, fresh.certPem, { mode: PUBLIC_FILE_MODE });
      return true;
    });
  }
  return {
    material: { keyPem: fs.readFileSync(files.keyFile, 'utf8'), certPem: fs.readFileSync(files.certFile, 'utf8') },
    issued,
  };
}
