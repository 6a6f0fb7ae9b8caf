// How a rollout's audit events name many devices. A wave of 18,000 devices named one by one
// was an audit row of a few hundred KB (and as much in every audit page and export that holds it), though
// the rollout itself keeps the list for good: its plan never changes (rollout_devices), and a
// revert is recorded per device. So an event names up to AUDIT_DEVICE_NAMES devices, and past
// that the first ones, how many there were and the SHA-256 of the whole list, which still
// commits the chain to exactly which devices: anyone can read the list back (GET
// /rollouts/:id/devices?wave=N, plan order) and check it against the digest.
import * as crypto from 'node:crypto';

/** Names an audit event lists in full. */
export const AUDIT_DEVICE_NAMES = 100;

/**
 * `items` as an audit event holds them under `key`: all of them, or the first
 * AUDIT_DEVICE_NAMES with `${key}Total` and `${key}Sha256` (of the JSON array of every item,
 * in the order given).
 */
export function auditedList<T>(key: string, items: readonly T[]): Record<string, unknown> {
  if (items.length <= AUDIT_DEVICE_NAMES) return { [key]: items };
  return {
    [key]: items.slice(0, AUDIT_DEVICE_NAMES),
    [`${key}Total`]: items.length,
    [`${key}Sha256`]: crypto.createHash('sha256').update(JSON.stringify(items)).digest('hex'),
  };
}
