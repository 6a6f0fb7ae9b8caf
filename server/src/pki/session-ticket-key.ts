// The key that seals the device API's TLS session tickets (RFC 8446 4.6.1).
// Node generates one per process by default, so a restarted replica could not open the tickets
// it issued before, and the reconnect storm after a restart, the moment resumption is for
// (core/src/runtime/resuming-credentials.ts), would be all full handshakes. So the key lives in
// the data dir, which the replicas share: a ticket from any replica resumes on any other.
//
// Why it is kept as carefully as the device CA key (docs/security.md, "TLS session
// resumption"): the server trusts the device certificate stored inside a ticket it can open,
// so whoever holds this key can forge a ticket for any device. It is private (0600) next to
// the CA key and, like it, replaced only by the operator (delete it and restart the replicas).
// Not on a schedule: Node holds one ticket key at a time, so a new key voids every ticket out
// there, and a device's ticket is as old as its connection; a key replaced at a start would
// turn the very restart storm resumption is for into full handshakes.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { PRIVATE_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';

/** Node's `ticketKeys`: 16 bytes of key name, 16 of HMAC key, 16 of AES key (tls.createServer). */
export const TICKET_KEY_BYTES = 48;
/** The same on every replica and every start (OpenSSL's session id context, at most 32 bytes). */
export const SESSION_ID_CONTEXT = 'meshanics-device-api';
/**
 * How long a ticket stays resumable: RFC 8446 4.6.1's ceiling, 7 days. A device's ticket is as
 * old as its connection (the server issues new ones only at a handshake), and connections last
 * days; a shorter life would leave most of a storm's devices with an expired ticket.
 */
export const SESSION_LIFETIME_SECONDS = 7 * 24 * 3600;

function usableKey(file: string): Buffer | undefined {
  let key: Buffer;
  try {
    key = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  // A truncated or foreign file is replaced, never used: a short key would make Node throw.
  return key.length === TICKET_KEY_BYTES ? key : undefined;
}

/**
 * The data dir's ticket key: the one there, else a new one written under the database write
 * lock (replicas starting together agree on one key).
 */
export async function ensureSessionTicketKey(file: string, withWriteLock: <T>(fn: () => T | Promise<T>) => Promise<T>): Promise<{ key: Buffer; created: boolean }> {
  const current = usableKey(file);
  if (current) return { key: current, created: false };
  return await withWriteLock(() => {
    const raced = usableKey(file);
    if (raced) return { key: raced, created: false };
    const key = randomBytes(TICKET_KEY_BYTES);
    writeFileAtomicSync(file, key, { mode: PRIVATE_FILE_MODE });
    return { key, created: true };
  });
}
