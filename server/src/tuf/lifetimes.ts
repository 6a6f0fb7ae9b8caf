// Metadata lifetimes (TUF spec 4.2: every role carries an "expires"; clients refuse expired
// metadata, 5.3.10, 5.4.4, 5.5.6, 5.6.6). Short-lived snapshot and timestamp bound how long
// a freeze attack can hide new versions from a device; the online re-signer renews them, and
// the online publisher role (the delegated targets role artifacts are signed into). Root and
// top-level targets live long because their keys may be offline (spec 6.1).
export const TUF_ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type TufRole = (typeof TUF_ROLES)[number];

/** The delegated targets role (spec 4.5 "delegations") that artifact targets are signed into. */
export const PUBLISHER_ROLE = 'publisher';
/** Every role whose key the server may hold: the four top-level roles and the publisher. */
export type SigningRole = TufRole | typeof PUBLISHER_ROLE;

const DAY_MS = 24 * 60 * 60 * 1000;

export const LIFETIME_MS: Readonly<Record<SigningRole, number>> = {
  root: 365 * DAY_MS,
  targets: 90 * DAY_MS,
  publisher: 30 * DAY_MS,
  snapshot: 7 * DAY_MS,
  timestamp: 1 * DAY_MS,
};

/** TUF "expires" format: ISO 8601 UTC without fractional seconds (spec 4.2). */
export function expiresAfter(ms: number, now: Date): string {
  return new Date(now.getTime() + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function expiresAt(role: SigningRole, now: Date): string {
  return expiresAfter(LIFETIME_MS[role], now);
}

/** Re-sign when less than half the lifetime is left, so one missed timer run never lets metadata expire. */
export function isDueForResigning(role: SigningRole, expires: string, now: Date): boolean {
  return Date.parse(expires) - now.getTime() < LIFETIME_MS[role] / 2;
}
