// tuf-js options every device uses (tuf-js defaults otherwise: length limits, at most 32
// delegations visited). Its own module so the lazily loaded agent path (tuf-target-source.ts)
// and the server's verification gate (device-verification.ts) share it without importing tuf-js.
export const DEVICE_UPDATER_CONFIG = Object.freeze({ prefixTargetsWithHash: true });
