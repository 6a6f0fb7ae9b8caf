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
  return (await subtle.importKey('pkcs8', der, EC_P256, false, ['sign'])) as CryptoKey;
}

/** Imports an EC P-256 public key (node KeyObject or SPKI PEM) as a WebCrypto key. */
export async function importPublicKey(key: crypto.KeyObject): Promise<CryptoKey> {
  const der = key.export({ type: 'spki', format: 'der' });
  return (await subtle.importKey('spki', der, EC_P256, true, ['verify'])) as CryptoKey;
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
