// The device's key pair is generated on the device and never leaves it; the server only
// ever sees a PKCS#10 request signed with it (proof of possession).
import * as crypto from 'node:crypto';
import type * as X509 from '@peculiar/x509';

// @peculiar/x509 (with reflect-metadata, tsyringe and the asn1 schemas) adds ~12 MiB to the
// agent's RSS (docs/benchmarks.md, idle agent), and only enrollment and renewal (every few
// weeks) make a CSR: it is imported at the first CSR, not at start.
let x509Module: Promise<typeof X509> | undefined;
function loadX509(): Promise<typeof X509> {
  x509Module ??= (async () => {
    await import('reflect-metadata');
    const x509 = await import('@peculiar/x509');
    x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    return x509;
  })();
  return x509Module;
}

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

export interface KeyAndCsr {
  /** PKCS#8 PEM; written to disk with mode 0600 only. */
  privateKeyPem: string;
  csrPem: string;
}

export async function generateKeyAndCsr(commonName: string): Promise<KeyAndCsr> {
  const x509 = await loadX509();
  const keys = await crypto.webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const privateKeyPem = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { privateKeyPem, csrPem: csr.toString('pem') };
}

/** Validity of a PEM certificate, for renewal scheduling. */
export function certificateValidity(certPem: string | Buffer): { notBefore: Date; notAfter: Date; fingerprint256: string } {
  const cert = new crypto.X509Certificate(certPem);
  return { notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo), fingerprint256: cert.fingerprint256 };
}

/** Renew when two thirds of the lifetime have passed. */
export function renewalDueAt(certPem: string | Buffer): Date {
  const { notBefore, notAfter } = certificateValidity(certPem);
  return new Date(notBefore.getTime() + ((notAfter.getTime() - notBefore.getTime()) * 2) / 3);
}
