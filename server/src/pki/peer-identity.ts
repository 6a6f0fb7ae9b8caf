import * as crypto from 'node:crypto';
import { parseDeviceSpiffeId, uriSans, type DeviceIdentity } from '@meshanics/core/contract';

export interface PeerDevice extends DeviceIdentity {
  spiffeId: string;
}

/**
 * The device a TLS-verified client certificate speaks for, or undefined. The chain was already
 * verified against the device CA by the TLS layer; this only reads the identity it asserts.
 * Exactly one URI SAN is accepted (an X.509-SVID carries exactly one), and its trust domain
 * must be ours: a certificate naming two identities or another domain names nobody.
 */
export function deviceFromCertificate(der: Buffer | undefined, trustDomain: string): PeerDevice | undefined {
  if (!der || der.length === 0) return undefined;
  // Parsing X.509 on every call was a measurable share of a heartbeat (docs/benchmarks.md);
  // a connection presents the same certificate on every call, so its identity is cached by
  // the exact certificate bytes (bounded, least recently used out first).
  const key = `${trustDomain}\u0000${der.toString('base64')}`;
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
  return { ...identity, spiffeId };
}
