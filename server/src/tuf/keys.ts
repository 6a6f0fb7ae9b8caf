// One ed25519 key per top-level role. In the embedded default every key, root's included,
// lives online in the data dir: anyone who reads <data-dir>/tuf/keys can sign updates.
// Offline root and targets keys are a later issue; the startup log says so.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Key, Signature, type Metadata, type Root, type Snapshot, type Targets, type Timestamp } from '@tufjs/models';
import { PRIVATE_FILE_MODE, writeFileAtomic } from '../atomic-file.js';
import { MeshError } from '../errors.js';
import type { TufRole } from './lifetimes.js';

export interface RoleKey {
  role: TufRole;
  /** The public key as root metadata lists it. */
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

export function roleKeyFile(keysDir: string, role: TufRole): string {
  return path.join(keysDir, `${role}.pem`);
}

/** Loads the role's key, creating it first if absent. Callers hold the data-dir write lock. */
export function loadOrCreateRoleKey(keysDir: string, role: TufRole): RoleKey {
  const file = roleKeyFile(keysDir, role);
  if (!fs.existsSync(file)) {
    const { privateKey } = crypto.generateKeyPairSync('ed25519');
    writeFileAtomic(file, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), PRIVATE_FILE_MODE);
  }
  return loadRoleKey(keysDir, role);
}

export function loadRoleKey(keysDir: string, role: TufRole): RoleKey {
  const file = roleKeyFile(keysDir, role);
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(fs.readFileSync(file));
  } catch (err) {
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `cannot read TUF ${role} key ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { role, key: tufPublicKey(crypto.createPublicKey(privateKey)), privateKey };
}

type AnyMetadata = Metadata<Root> | Metadata<Targets> | Metadata<Snapshot> | Metadata<Timestamp>;

/** Replaces the metadata's signatures with one by `roleKey` over the canonical JSON of "signed" (spec 4.2). */
export function signMetadata(metadata: AnyMetadata, roleKey: RoleKey): void {
  try {
    metadata.sign(
      (bytes) => new Signature({ keyID: roleKey.key.keyID, sig: crypto.sign(null, bytes, roleKey.privateKey).toString('hex') }),
      false,
    );
  } catch (err) {
    throw new MeshError('MESH_ERR_TUF_SIGNING_FAILED', `signing ${roleKey.role} metadata failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
