// Which role keys this data dir holds, and whether the metadata still trusts them. A key on
// disk is only used when the metadata that delegates to its role lists it: a key rotated away
// by an offline ceremony (`tuf import`) is never signed with again (TUF spec 6.1).
import * as fs from 'node:fs';
import { MeshError } from '../errors.js';
import { publisherRole } from './delegation.js';
import { exportPublicKey, readRoleKey, roleKeyFile, type PublicKeyExport, type RoleKey } from './keys.js';
import { PUBLISHER_ROLE, TUF_ROLES, type SigningRole, type TufRole } from './lifetimes.js';
import { readPendingKey } from './pending-keys.js';
import type { RepositoryState } from './state.js';

export const ONLINE_KEYS_FORMAT = 'meshanics-tuf-online-keys/1';

/** What `tuf online-keys` exports for the offline machine. */
export interface OnlineKeysExport {
  format: typeof ONLINE_KEYS_FORMAT;
  versions: { root: number; targets: number };
  keys: { snapshot: PublicKeyExport; timestamp: PublicKeyExport; publisher: PublicKeyExport };
}

export interface KeyCustody {
  /** Roles whose trusted private key is in the data dir. */
  online: SigningRole[];
  /** Top-level roles the data dir holds no trusted key for (kept offline). */
  offline: TufRole[];
}

type Trusted = { keyIDs: string[] } | undefined;

/** The role's key from disk, checked against the metadata that delegates to it. */
export function trustedRoleKey(keysDir: string, role: SigningRole, trusted: Trusted): RoleKey {
  const key = readRoleKey(keysDir, role);
  if (!key && !readPendingKey(keysDir, role)) {
    throw new MeshError('MESH_ERR_TUF_SIGNING_FAILED', `the data dir holds no ${role} key (${keysDir}/${role}.pem); it is kept offline`);
  }
  const listed = onlineRoleKey(keysDir, role, trusted);
  if (!listed) {
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `the ${role} key on disk (${key?.key.keyID ?? 'pending only'}) is not one the trusted metadata lists for ${role}`);
  }
  return listed;
}

/**
 * The key if the data dir holds a trusted one, else undefined (offline). A key staged by
 * `tuf rotate-online` counts as soon as the trusted metadata lists it: from the commit of its
 * activation until the rename that promotes it (online-rotation.ts), also after a crash there.
 */
export function onlineRoleKey(keysDir: string, role: SigningRole, trusted: Trusted): RoleKey | undefined {
  for (const key of [readRoleKey(keysDir, role), readPendingKey(keysDir, role)]) if (key && trusted?.keyIDs.includes(key.key.keyID)) return key;
  return undefined;
}

/** Which keys sit in the data dir: the start-up log warns while root or targets is among them. */
export function keyCustodyOf(keysDir: string, readState: () => RepositoryState): KeyCustody {
  try {
    const s = readState();
    const roles = s.root.metadata.signed.roles;
    const online: SigningRole[] = TUF_ROLES.filter((r) => onlineRoleKey(keysDir, r, roles[r]) !== undefined);
    if (onlineRoleKey(keysDir, PUBLISHER_ROLE, publisherRole(s.targets.metadata.signed))) online.push(PUBLISHER_ROLE);
    return { online, offline: TUF_ROLES.filter((r) => !online.includes(r)) };
  } catch {
    // Unverifiable metadata or an unreadable key (reported by whoever uses them next):
    // answer from which key files exist, so a start-up log never hides an online root key.
    const online = ([...TUF_ROLES, PUBLISHER_ROLE] as SigningRole[]).filter((r) => fs.existsSync(roleKeyFile(keysDir, r)));
    return { online, offline: TUF_ROLES.filter((r) => !online.includes(r)) };
  }
}

/** Public keys of the online roles and the current versions, for `tuf sign-root` / `tuf sign-targets` offline. */
export function onlineKeysExport(keysDir: string, s: RepositoryState): OnlineKeysExport {
  const roles = s.root.metadata.signed.roles;
  return {
    format: ONLINE_KEYS_FORMAT,
    versions: { root: s.root.metadata.signed.version, targets: s.targets.metadata.signed.version },
    keys: {
      snapshot: exportPublicKey(trustedRoleKey(keysDir, 'snapshot', roles.snapshot).key),
      timestamp: exportPublicKey(trustedRoleKey(keysDir, 'timestamp', roles.timestamp).key),
      publisher: exportPublicKey(trustedRoleKey(keysDir, PUBLISHER_ROLE, publisherRole(s.targets.metadata.signed)).key),
    },
  };
}
