// An operator's own CA and the REST API certificates it issues, for the HTTPS tests (made
// with @peculiar/x509, as the server's PKI is: never hand-rolled). Unrelated to the server's
// device CA: the operator's certificate comes from the operator's PKI.
import 'reflect-metadata';
import * as crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's global WebCrypto: typed as the provider wants it both with and without the DOM's lib
// (the console's browser tests import this file too).
x509.cryptoProvider.set(globalThis.crypto);

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface OperatorCa {
  certPem: string;
  cert: x509.X509Certificate;
  keys: crypto.webcrypto.CryptoKeyPair;
}

export interface IssuedServerCert {
  certPem: string;
  keyPem: string;
  /** Hex, as Node's X509Certificate and TLS peer certificates print it. */
  serialNumber: string;
}

function serial(): string {
  // Positive (first bit clear), 16 bytes.
  const b = crypto.randomBytes(16);
  b[0]! &= 0x7f;
  return b.toString('hex');
}

async function keyPair(): Promise<crypto.webcrypto.CryptoKeyPair> {
  return crypto.webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
}

export async function operatorCa(name = 'Operator Test CA'): Promise<OperatorCa> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - DAY_MS),
    notAfter: new Date(Date.now() + 30 * DAY_MS),
    keys,
    signingAlgorithm: ECDSA,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', cert, keys };
}

/** A server certificate for localhost and 127.0.0.1, issued by `ca`. */
export async function serverCertificate(ca: OperatorCa, commonName: string): Promise<IssuedServerCert> {
  const keys = await keyPair();
  const serialNumber = serial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${commonName}`,
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - DAY_MS),
    notAfter: new Date(Date.now() + 30 * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ECDSA,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { certPem: cert.toString('pem') + '\n', keyPem, serialNumber: new crypto.X509Certificate(cert.toString('pem')).serialNumber };
}
