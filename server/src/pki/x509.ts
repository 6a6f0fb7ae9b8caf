// @peculiar/x509 needs reflect-metadata loaded before it and a WebCrypto provider; every
// PKI module imports x509 from here so that order is guaranteed once, in one place.
import 'reflect-metadata';
import * as crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/** WebCrypto key type (this project builds without the DOM lib). */
export type CryptoKey = crypto.webcrypto.CryptoKey;

export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

const subtle = crypto.webcrypto.subtle;

export interface PemKeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
}

/** A fresh P-256 key pair as PKCS#8 / SPKI PEM. */
export function generateP256KeyPair(): PemKeyPair {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Imports a PKCS#8 PEM private key as a WebCrypto signing key for @peculiar/x509. */
export async function importSigningKey(privateKeyPem: string): Promise<CryptoKey> {
  const der = crypto.createPrivateKey(privateKeyPem).export({ type: 'pkcs8', format: 'der' });
  return await subtle.importKey('pkcs8', der, EC_P256, false, ['sign']);
}

/** The key types a device may hold; each is what current TLS stacks accept for client auth. */
export type DeviceKeyType = 'ecdsa-p256' | 'ecdsa-p384' | 'ed25519';

const DEVICE_KEY_ALGORITHMS: Record<DeviceKeyType, { name: string; namedCurve?: string }> = {
  'ecdsa-p256': EC_P256,
  'ecdsa-p384': { name: 'ECDSA', namedCurve: 'P-384' },
  ed25519: { name: 'Ed25519' },
};

/** The device key type of `key`, or undefined when devices may not use it (RSA, other curves). */
export function deviceKeyType(key: crypto.KeyObject): DeviceKeyType | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType !== 'ec') return undefined;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve === 'prime256v1' ? 'ecdsa-p256' : curve === 'secp384r1' ? 'ecdsa-p384' : undefined;
}

/** Imports a public key of a supported device key type as a WebCrypto key (for certificate subjects). */
export async function importPublicKey(key: crypto.KeyObject): Promise<CryptoKey> {
  const type = deviceKeyType(key);
  if (!type) throw new Error(`unsupported public key type ${key.asymmetricKeyType ?? 'unknown'}`);
  const der = key.export({ type: 'spki', format: 'der' });
  return await subtle.importKey('spki', der, DEVICE_KEY_ALGORITHMS[type], true, ['verify']);
}

/** sha256 of the DER SubjectPublicKeyInfo: how the certificate log and renewal compare keys. */
export function spkiSha256(key: crypto.KeyObject): string {
  return crypto
    .createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** A positive, random 128-bit serial number (RFC 5280 4.1.2.2: unique, at most 20 octets). */
export function randomSerialNumber(): string {
  const bytes = crypto.randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** Same public key? Detects a key/certificate pair torn by a crash between two writes. */
export function sameSpki(a: crypto.KeyObject, b: crypto.KeyObject): boolean {
  return a.export({ type: 'spki', format: 'der' }).equals(b.export({ type: 'spki', format: 'der' }));
}

/** Backdating notBefore tolerates devices whose clock is slightly behind the server's. */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;
export const DAY_MS = 24 * 60 * 60 * 1000;
