// Online keys staged by `tuf rotate-online --stage` (online-rotation.ts) and not yet active:
// <keys>/pending-ROLE.pem next to the active <keys>/ROLE.pem. They are flat files in the same
// directory so that promoting one is a single rename over the active key (atomic, and the
// old private key is unlinked by it), and so that backups and the key listings see them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadKeyFile, type RoleKey } from './keys.js';
import type { SigningRole } from './lifetimes.js';

export function pendingKeyFile(keysDir: string, role: SigningRole): string {
  return path.join(keysDir, `pending-${role}.pem`);
}

/** The staged key for `role`, if one is on disk. */
export function readPendingKey(keysDir: string, role: SigningRole): RoleKey | undefined {
  const file = pendingKeyFile(keysDir, role);
  return fs.existsSync(file) ? loadKeyFile(file, role) : undefined;
}
