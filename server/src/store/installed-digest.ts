// The digest a device row keeps of its installed set (migration 5): the heartbeat compares
// the set a device reports with it instead of reading the set back. Order-independent, and
// every field the set stores takes part, so any change of an entry changes the digest.
import * as crypto from 'node:crypto';
import type { InstalledRecord } from './store.js';

type InstalledEntry = Omit<InstalledRecord, 'updatedAt'>;

export function installedDigest(installed: ReadonlyArray<InstalledEntry>): string {
  const entries = installed.map((i) => [i.name, i.kind, i.version, i.sha256, i.state]);
  entries.sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));
  // One-shot: a Hash object per heartbeat was most of this function's cost (docs/benchmarks.md, heartbeat profile).
  return crypto.hash('sha256', JSON.stringify(entries), 'hex');
}

/** The digest of a device that has installed nothing (a new device row starts with it). */
export const EMPTY_INSTALLED_DIGEST = installedDigest([]);
