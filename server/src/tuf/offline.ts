// The offline half of the key ceremony (TUF spec 6.1 "Key management and migration"): run on
// a machine that never talks to the server, with the root and targets private keys on it.
// Inputs come from the server as files (`tuf online-keys`), outputs go back as files
// (`tuf import`); nothing here opens a data dir.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, MetadataKind, Root, Targets, type Key } from '@tufjs/models';
import { PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { publisherDelegation, DEFAULT_DELEGATED_PATHS } from './delegation.js';
import { TufError } from './errors.js';
import { exportPublicKey, generateKeyFile, importPublicKey, loadKeyFile, signMetadata, type PublicKeyExport, type RoleKey } from './keys.js';
import { expiresAfter, LIFETIME_MS } from './lifetimes.js';
import { ONLINE_KEYS_FORMAT, type OnlineKeysExport } from './key-custody.js';
import { TUF_SPEC_VERSION } from './metadata-files.js';

export type OfflineRole = 'root' | 'targets';

export interface KeygenResult {
  role: OfflineRole;
  keyid: string;
  privateKeyFile: string;
  publicKeyFile: string;
}

/** `tuf keygen`: DIR/ROLE.pem (0600, never overwritten) and DIR/ROLE.pub.json (the TUF public key). */
export function keygen(role: OfflineRole, dir: string): KeygenResult {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const privateKeyFile = path.join(dir, `${role}.pem`);
  const publicKeyFile = path.join(dir, `${role}.pub.json`);
  if (fs.existsSync(publicKeyFile)) throw new TufError('MESH_ERR_TUF_KEY_EXISTS', `${publicKeyFile} already exists; a key is never overwritten`);
  const key = generateKeyFile(privateKeyFile, role);
  writeFileAtomicSync(publicKeyFile, JSON.stringify(exportPublicKey(key.key), null, 2) + '\n', { mode: PUBLIC_FILE_MODE });
  return { role, keyid: key.key.keyID, privateKeyFile, publicKeyFile };
}

function readJson(file: string, what: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export function readOnlineKeys(file: string): { versions: OnlineKeysExport['versions']; snapshot: Key; timestamp: Key; publisher: Key } {
  const data = readJson(file, 'the online-keys export') as Partial<OnlineKeysExport>;
  if (data?.format !== ONLINE_KEYS_FORMAT || !data.keys || !data.versions) {
    throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `${file} is not a \`tuf online-keys\` export (format ${ONLINE_KEYS_FORMAT})`);
  }
  return {
    versions: data.versions,
    snapshot: importPublicKey(data.keys.snapshot, `${file} keys.snapshot`),
    timestamp: importPublicKey(data.keys.timestamp, `${file} keys.timestamp`),
    publisher: importPublicKey(data.keys.publisher, `${file} keys.publisher`),
  };
}

/** The role's key from DIR: the private key when present, else DIR/ROLE.pub.json. */
function publicKeyIn(dir: string, role: OfflineRole): Key {
  const pem = path.join(dir, `${role}.pem`);
  if (fs.existsSync(pem)) return loadKeyFile(pem, role).key;
  const pub = path.join(dir, `${role}.pub.json`);
  if (!fs.existsSync(pub)) throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `neither ${pem} nor ${pub} exists (run \`tuf keygen --role ${role}\`)`);
  return importPublicKey(readJson(pub, `the ${role} public key`), pub);
}

function privateKeyIn(dir: string, role: OfflineRole): RoleKey {
  const pem = path.join(dir, `${role}.pem`);
  if (!fs.existsSync(pem)) throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `${pem} does not exist: signing ${role} metadata needs the ${role} private key`);
  return loadKeyFile(pem, role);
}

function serialize(md: Metadata<Root> | Metadata<Targets>): string {
  return canonicalize(md.toJSON()) + '\n';
}

export interface SignRootInput {
  keysDir: string;
  onlineKeysFile: string;
  out: string;
  /** The current root's key, when it is not DIR/root.pem (rotating the offline root key itself). */
  previousRootKeyFile?: string;
  expiresInMs?: number;
  now?: Date;
}

/**
 * `tuf sign-root`: root version current+1 naming the offline root and targets keys and the
 * server's online snapshot and timestamp keys, signed by the offline root key (and the
 * previous root key when given: spec 5.3.4 wants the old threshold too; the embedded default's
 * old key is in the server data dir, which adds it at import).
 */
export function signRoot(input: SignRootInput): { version: number; out: string; keyids: Record<string, string>; signedBy: string[] } {
  const online = readOnlineKeys(input.onlineKeysFile);
  const rootKey = privateKeyIn(input.keysDir, 'root');
  const targetsKey = publicKeyIn(input.keysDir, 'targets');
  const now = input.now ?? new Date();
  const root = new Root({
    version: online.versions.root + 1,
    specVersion: TUF_SPEC_VERSION,
    expires: expiresAfter(input.expiresInMs ?? LIFETIME_MS.root, now),
    consistentSnapshot: true,
  });
  root.addKey(rootKey.key, 'root');
  root.addKey(targetsKey, 'targets');
  root.addKey(online.snapshot, 'snapshot');
  root.addKey(online.timestamp, 'timestamp');
  const md = new Metadata(root);
  signMetadata(md, rootKey);
  const signedBy = [rootKey.key.keyID];
  if (input.previousRootKeyFile) {
    const previous = loadKeyFile(input.previousRootKeyFile, 'root');
    if (previous.key.keyID !== rootKey.key.keyID) {
      signMetadata(md, previous, true);
      signedBy.push(previous.key.keyID);
    }
  }
  writeFileAtomicSync(input.out, serialize(md), { mode: PUBLIC_FILE_MODE });
  return {
    version: root.version,
    out: path.resolve(input.out),
    keyids: { root: rootKey.key.keyID, targets: targetsKey.keyID, snapshot: online.snapshot.keyID, timestamp: online.timestamp.keyID },
    signedBy,
  };
}

export interface SignTargetsInput {
  keysDir: string;
  onlineKeysFile: string;
  /** The root the targets key must be listed by (the one just signed, or the current one). */
  rootFile: string;
  out: string;
  delegatePaths?: string[];
  expiresInMs?: number;
  now?: Date;
}

/** `tuf sign-targets`: top-level targets version current+1 holding only the publisher delegation. */
export function signTargets(input: SignTargetsInput): { version: number; out: string; delegatedPaths: string[]; publisherKeyid: string } {
  const online = readOnlineKeys(input.onlineKeysFile);
  const targetsKey = privateKeyIn(input.keysDir, 'targets');
  let root: Metadata<Root>;
  try {
    root = Metadata.fromJSON(MetadataKind.Root, readJson(input.rootFile, 'the root metadata') as never);
  } catch (err) {
    if (err instanceof TufError) throw err;
    throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${input.rootFile} is not root metadata: ${(err as Error).message}`, { cause: err });
  }
  // Catch the wrong key here, on the offline machine, rather than at import.
  if (!root.signed.roles.targets?.keyIDs.includes(targetsKey.key.keyID)) {
    throw new TufError(
      'MESH_ERR_TUF_IMPORT_SIGNATURE',
      `root v${root.signed.version} (${input.rootFile}) does not list targets key ${targetsKey.key.keyID}; it lists [${root.signed.roles.targets?.keyIDs.join(', ')}]`,
    );
  }
  const paths = input.delegatePaths && input.delegatePaths.length > 0 ? input.delegatePaths : [...DEFAULT_DELEGATED_PATHS];
  const now = input.now ?? new Date();
  const targets = new Targets({
    version: online.versions.targets + 1,
    specVersion: TUF_SPEC_VERSION,
    expires: expiresAfter(input.expiresInMs ?? LIFETIME_MS.targets, now),
    delegations: publisherDelegation(online.publisher, paths),
  });
  const md = new Metadata(targets);
  signMetadata(md, targetsKey);
  writeFileAtomicSync(input.out, serialize(md), { mode: PUBLIC_FILE_MODE });
  return { version: targets.version, out: path.resolve(input.out), delegatedPaths: paths, publisherKeyid: online.publisher.keyID };
}

export type { PublicKeyExport };
