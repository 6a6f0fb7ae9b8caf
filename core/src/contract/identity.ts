// Device identity as carried by the certificate's URI SAN:
//   spiffe://<trust-domain>/fleet/<fleet>/device/<name>
// Fleet and device names follow DNS-label rules so they are safe in URIs, paths and logs.

export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

export interface DeviceIdentity {
  trustDomain: string;
  fleet: string;
  name: string;
}

export function isDnsLabel(value: string): boolean {
  return DNS_LABEL.test(value);
}

export function deviceSpiffeId(id: DeviceIdentity): string {
  if (!TRUST_DOMAIN.test(id.trustDomain)) throw new Error(`invalid trust domain "${id.trustDomain}"`);
  if (!isDnsLabel(id.fleet)) throw new Error(`invalid fleet name "${id.fleet}": must be a DNS label`);
  if (!isDnsLabel(id.name)) throw new Error(`invalid device name "${id.name}": must be a DNS label`);
  return `spiffe://${id.trustDomain}/fleet/${id.fleet}/device/${id.name}`;
}

/** Parses a device SPIFFE ID; returns undefined for anything that is not exactly one. */
export function parseDeviceSpiffeId(uri: string): DeviceIdentity | undefined {
  const m = /^spiffe:\/\/([^/]+)\/fleet\/([^/]+)\/device\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  const [, trustDomain, fleet, name] = m as unknown as [string, string, string, string];
  if (!TRUST_DOMAIN.test(trustDomain) || !isDnsLabel(fleet) || !isDnsLabel(name)) return undefined;
  return { trustDomain, fleet, name };
}

/**
 * Extracts the URI SANs from Node's X509Certificate.subjectAltName string
 * ("DNS:a, URI:spiffe://..."). Node escapes SAN values that contain separators,
 * so a value with a comma arrives quoted and is rejected by parseDeviceSpiffeId.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(', ')
    .filter((part) => part.startsWith('URI:'))
    .map((part) => part.slice(4));
}
