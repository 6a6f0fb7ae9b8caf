// ed25519 role keys. The server keeps the online ones (snapshot, timestamp, publisher) in
// <data-dir>/tuf/keys; in the embedded default root and targets are there too, until an
// offline ceremony (`meshanics-server tuf ...`) hands them to keys the server never sees and
// `tuf import` deletes the online copies (TUF spec 6.1: root and targets keys offline).
// Keys are read from disk on every signing, never cached: a key rotated on disk by another
// process (`tuf import` next to a running `serve`) is used at once, and parsing a PEM is
// microseconds against the milliseconds of writing metadata.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Key, Signature, type Metadata, type Root, type Snapshot, type Targets, type Timestamp } from '@tufjs/models';
import { PRIVATE_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';
import { TufError } from './errors.js';
import type { SigningRole } from './lifetimes.js';

export interface RoleKey {
  role: SigningRole;
  /** The public key as root or delegating metadata lists it. */
  key: Key;
  privateKey: crypto.KeyObject;
}

/** TUF key object for an ed25519 public key: keyval.public is the raw 32 bytes in hex (spec 4.2 "ed25519"). */
export function tufPublicKey(publicKey: crypto.KeyObject): Key {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', 'TUF role keys must be ed25519');
  }
  const hex = Buffer.from(jwk.x, 'base64url').toString('hex');
  const unidentified = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: hex } };
  // KEYID: the hex sha256 of the canonical JSON of the public key object (spec 4.2).
  const keyID = crypto.createHash('sha256').update(canonicalize(unidentified)).digest('hex');
  return new Key({ keyID, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: hex } });
}

/** A public key as exported for the offline machine: the TUF key object plus its id. */
export interface PublicKeyExport {
  keyid: string;
  keytype: string;
  scheme: string;
  keyval: { public: string };
}

export function exportPublicKey(key: Key): PublicKeyExport {
  return { keyid: key.keyID, ...(key.toJSON() as Omit<PublicKeyExport, 'keyid'>) };
}

/** Parses an exported public key and checks that its keyid is the one its content hashes to. */
export function importPublicKey(data: unknown, what: string): Key {
  let key: Key;
  try {
    const { keyid, ...rest } = data as PublicKeyExport;
    key = Key.fromJSON(String(keyid), rest);
  } catch (err) {
    throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `${what} is not a TUF public key: ${(err as Error).message}`, { cause: err });
  }
  const recomputed = crypto.createHash('sha256').update(canonicalize(key.toJSON())).digest('hex');
  if (key.keyType !== 'ed25519' || recomputed !== key.keyID) {
    throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `${what}: keyid ${key.keyID} is not the sha256 of an ed25519 key object`);
  }
  return key;
}

export function roleKeyFile(keysDir: string, role: SigningRole): string {
  return path.join(keysDir, `${role}.pem`);
}

/** Writes a new ed25519 private key (PKCS#8 PEM, 0600) to `file`; refuses to replace one. */
export function generateKeyFile(file: string, role: SigningRole): RoleKey {
  if (fs.existsSync(file)) throw new TufError('MESH_ERR_TUF_KEY_EXISTS', `${file} already exists; a key is never overwritten`);
  const { privateKey } = crypto.generateKeyPairSync('ed25519');
  writeFileAtomicSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), { mode: PRIVATE_FILE_MODE });
  return { role, key: tufPublicKey(crypto.createPublicKey(privateKey)), privateKey };
}

/** Loads the role's key, creating it first if absent. Callers hold the data-dir write lock. */
export function loadOrCreateRoleKey(keysDir: string, role: SigningRole): RoleKey {
  const file = roleKeyFile(keysDir, role);
  if (!fs.existsSync(file)) generateKeyFile(file, role);
  return loadRoleKey(keysDir, role);
}

export function loadKeyFile(file: string, role: SigningRole): RoleKey {
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(fs.readFileSync(file));
  } catch (err) {
    throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `cannot read TUF ${role} key ${file}: ${(err as Error).message}`, { cause: err });
  }
  return { role, key: tufPublicKey(crypto.createPublicKey(privateKey)), privateKey };
}

export function loadRoleKey(keysDir: string, role: SigningRole): RoleKey {
  const file = roleKeyFile(keysDir, role);
  try {
    return loadKeyFile(file, role);
  } catch (err) {
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `cannot read TUF ${role} key ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** The role's key if the data dir holds one (root and targets are absent once offline). */
export function readRoleKey(keysDir: string, role: SigningRole): RoleKey | undefined {
  return fs.existsSync(roleKeyFile(keysDir, role)) ? loadRoleKey(keysDir, role) : undefined;
}

type AnyMetadata = Metadata<Root> | Metadata<Targets> | Metadata<Snapshot> | Metadata<Timestamp>;

/**
 * Signs the canonical JSON of "signed" (spec 4.2) with `roleKey`. Without `append` the
 * signatures are replaced; with it one more is added (a new root signed by old and new keys).
 */
export function signMetadata(metadata: AnyMetadata, roleKey: RoleKey, append = false): void {
  try {
    metadata.sign((bytes) => new Signature({ keyID: roleKey.key.keyID, sig: crypto.sign(null, bytes, roleKey.privateKey).toString('hex') }), append);
  } catch (err) {
    throw new MeshError('MESH_ERR_TUF_SIGNING_FAILED', `signing ${roleKey.role} metadata failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
