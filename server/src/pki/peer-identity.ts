import * as crypto from 'node:crypto';
import { parseDeviceSpiffeId, uriSans, type DeviceIdentity } from '@meshanics/core/contract';

export interface PeerDevice extends DeviceIdentity {
  spiffeId: string;
  /** The certificate's notAfter (ms since the epoch): calls on a connection that outlives it are refused. */
  notAfterMs: number;
}

/**
 * The device a TLS-verified client certificate speaks for, or undefined. The chain was already
 * verified against the device CA by the TLS layer; this only reads the identity it asserts.
 * Exactly one URI SAN is accepted (an X.509-SVID carries exactly one), and its trust domain
 * must be ours: a certificate naming two identities or another domain names nobody.
 */
export function deviceFromCertificate(der: Buffer | undefined, trustDomain: string): PeerDevice | undefined {
  if (!der || der.length === 0) return undefined;
  // The device API pins each connection's certificate object (device-api/tls-listener.ts), so
  // its DER buffer is the same object on every call of the connection: identity once per
  // connection, and gone with it (a WeakMap holds nothing alive).
  let connections = perConnection.get(trustDomain);
  if (!connections) perConnection.set(trustDomain, (connections = new WeakMap()));
  const pinned = connections.get(der);
  if (pinned !== undefined) return pinned ?? undefined;
  const identity = identityOf(der, trustDomain);
  connections.set(der, identity ?? null);
  return identity;
}

const perConnection = new Map<string, WeakMap<Buffer, PeerDevice | null>>();

function identityOf(der: Buffer, trustDomain: string): PeerDevice | undefined {
  // Surfaces whose TLS is not ours to pin (the artifact server's HTTPS requests, each with a
  // new certificate object) still parse X.509 only once per certificate: cached by the exact
  // certificate bytes (bounded, least recently used out first). Keyed by the bytes' SHA-256,
  // not the bytes: a base64 DER key held ~700 bytes per device for up to IDENTITY_CACHE_SIZE
  // devices (docs/benchmarks.md, "Memory per connected device").
  const key = `${trustDomain}\u0000${crypto.createHash('sha256').update(der).digest('base64')}`;
  const cached = identityCache.get(key);
  if (cached !== undefined) {
    identityCache.delete(key);
    identityCache.set(key, cached);
    return cached ?? undefined;
  }
  const identity = parseIdentity(der, trustDomain);
  identityCache.set(key, identity ?? null);
  if (identityCache.size > IDENTITY_CACHE_SIZE) identityCache.delete(identityCache.keys().next().value!);
  return identity;
}

const IDENTITY_CACHE_SIZE = 10_000;
const identityCache = new Map<string, PeerDevice | null>();

function parseIdentity(der: Buffer, trustDomain: string): PeerDevice | undefined {
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(der);
  } catch {
    return undefined;
  }
  const uris = uriSans(cert.subjectAltName);
  if (uris.length !== 1) return undefined;
  const spiffeId = uris[0]!;
  const identity = parseDeviceSpiffeId(spiffeId);
  if (!identity || identity.trustDomain !== trustDomain) return undefined;
  return { ...identity, spiffeId, notAfterMs: Date.parse(cert.validTo) };
}
