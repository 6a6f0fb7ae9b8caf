// The offline half of the key ceremony (TUF spec 6.1 "Key management and migration"): run on
// a machine that never talks to the server, with the root and targets private keys on it.
// Inputs come from the server as files (`tuf online-keys`), outputs go back as files
// (`tuf import`); nothing here opens a data dir.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, Root, Targets, type Key } from '@tufjs/models';
import { PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { publisherDelegation, DEFAULT_DELEGATED_PATHS } from './delegation.js';
import { TufError } from './errors.js';
import { exportPublicKey, generateKeyFile, importPublicKey, loadKeyFile, signMetadata, type PublicKeyExport, type RoleKey } from './keys.js';
import { expiresAfter, LIFETIME_MS } from './lifetimes.js';
import { ONLINE_KEYS_FORMAT, type OnlineKeysExport } from './key-custody.js';
import { TUF_SPEC_VERSION } from './metadata-files.js';
import { aliasedKeyIds, parseSignedFile, thresholdStatus, type OfflineRole, type ThresholdStatus } from './threshold.js';

export type { OfflineRole };

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

type OfflineMetadata = Metadata<Root> | Metadata<Targets>;

function serialize(md: OfflineMetadata): string {
  return canonicalize(md.toJSON()) + '\n';
}

/** A public key from a `tuf keygen` file: DIR/ROLE.pub.json, or the private .pem itself. */
export function readPublicKeyFile(file: string): Key {
  if (file.endsWith('.pem')) return loadKeyFile(file, 'root').key;
  return importPublicKey(readJson(file, 'the public key'), file);
}

function readRootFile(file: string): Metadata<Root> {
  return parseSignedFile<Root>(fs.readFileSync(file), file, ['root']).md;
}

/** n distinct keys and 1 <= k <= n: a threshold above n could never be met, and a key given twice would count once. */
function checkThreshold(role: OfflineRole, keys: Key[], threshold: number): void {
  const ids = keys.map((k) => k.keyID);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice) throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${role} key ${twice} is given twice; a threshold counts distinct keys`);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > keys.length) {
    throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${role} threshold ${threshold} must be an integer from 1 to the ${keys.length} ${role} key(s) given`);
  }
}

export interface SignRootInput {
  /** DIR from `tuf keygen`: its root and targets keys (one each) unless rootKeyFiles/targetsKeyFiles name them; signs with DIR/root.pem when present. */
  keysDir?: string;
  /** The n root keys (ROLE.pub.json or .pem files, one per holder). */
  rootKeyFiles?: string[];
  targetsKeyFiles?: string[];
  /** k of the n root keys must sign (default 1). */
  rootThreshold?: number;
  targetsThreshold?: number;
  /** Private keys to sign with here (holders may instead sign later with `tuf sign`). */
  signKeyFiles?: string[];
  onlineKeysFile: string;
  out: string;
  /** The current root's key, when it is not DIR/root.pem (rotating the offline root key itself). */
  previousRootKeyFile?: string;
  expiresInMs?: number;
  now?: Date;
}

export interface SignRootResult {
  version: number;
  out: string;
  keyids: { root: string[]; targets: string[]; snapshot: string; timestamp: string };
  thresholds: { root: number; targets: number };
  signedBy: string[];
  /** Progress against the new root's own root threshold (spec 5.3.4 (2)). */
  status: ThresholdStatus;
}

/**
 * `tuf sign-root`: root version current+1 naming n offline root keys and n' targets keys with
 * their thresholds, and the server's online snapshot and timestamp keys (threshold 1). It is
 * signed by the keys given here, if any; the holders add theirs with `tuf sign`. Spec 5.3.4
 * wants a threshold of the old root's keys too: the embedded default's old key is in the server
 * data dir, which adds it at import; offline old keys sign like any other holder.
 */
export function signRoot(input: SignRootInput): SignRootResult {
  const online = readOnlineKeys(input.onlineKeysFile);
  const fromDir = (role: OfflineRole, files: string[] | undefined): Key[] => {
    if (files && files.length > 0) return files.map(readPublicKeyFile);
    if (!input.keysDir) throw new TufError('MESH_ERR_TUF_KEY_UNREADABLE', `no ${role} keys: give --${role}-key FILE (one per holder) or --keys DIR`);
    return [publicKeyIn(input.keysDir, role)];
  };
  const rootKeys = fromDir('root', input.rootKeyFiles);
  const targetsKeys = fromDir('targets', input.targetsKeyFiles);
  const thresholds = { root: input.rootThreshold ?? 1, targets: input.targetsThreshold ?? 1 };
  checkThreshold('root', rootKeys, thresholds.root);
  checkThreshold('targets', targetsKeys, thresholds.targets);
  const now = input.now ?? new Date();
  const draft = new Root({
    version: online.versions.root + 1,
    specVersion: TUF_SPEC_VERSION,
    expires: expiresAfter(input.expiresInMs ?? LIFETIME_MS.root, now),
    consistentSnapshot: true,
  });
  for (const k of rootKeys) draft.addKey(k, 'root');
  for (const k of targetsKeys) draft.addKey(k, 'targets');
  draft.addKey(online.snapshot, 'snapshot');
  draft.addKey(online.timestamp, 'timestamp');
  // Role is not exported by @tufjs/models and its threshold is read-only: set it in the JSON form and parse it back.
  const json = draft.toJSON() as { roles: Record<OfflineRole, { threshold: number }> };
  json.roles.root.threshold = thresholds.root;
  json.roles.targets.threshold = thresholds.targets;
  const root = Root.fromJSON(json);
  for (const role of ['root', 'targets'] as const) {
    const alias = aliasedKeyIds(root, role)[0];
    if (alias) throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${role} key ${alias.keyid} is the same public key as ${alias.sameKeyAs}; a threshold counts distinct keys`);
  }
  const md = new Metadata(root);
  const signers: RoleKey[] = (input.signKeyFiles ?? []).map((f) => loadKeyFile(f, 'root'));
  // `--keys DIR` alone keeps its meaning from before thresholds: DIR/root.pem signs.
  if (input.keysDir && !input.rootKeyFiles?.length && fs.existsSync(path.join(input.keysDir, 'root.pem'))) signers.push(privateKeyIn(input.keysDir, 'root'));
  if (input.previousRootKeyFile) signers.push(loadKeyFile(input.previousRootKeyFile, 'root'));
  for (const signer of signers) signMetadata(md, signer, true);
  writeFileAtomicSync(input.out, serialize(md), { mode: PUBLIC_FILE_MODE });
  return {
    version: root.version,
    out: path.resolve(input.out),
    keyids: { root: rootKeys.map((k) => k.keyID), targets: targetsKeys.map((k) => k.keyID), snapshot: online.snapshot.keyID, timestamp: online.timestamp.keyID },
    thresholds,
    signedBy: Object.keys(md.signatures),
    status: thresholdStatus(md, 'root', md),
  };
}

export interface SignTargetsInput {
  /** DIR holding targets.pem, which signs (as before thresholds). */
  keysDir?: string;
  /** Private targets keys to sign with here; holders may instead sign later with `tuf sign`. */
  signKeyFiles?: string[];
  onlineKeysFile: string;
  /** The root the targets keys must be listed by (the one just signed, or the current one). */
  rootFile: string;
  out: string;
  delegatePaths?: string[];
  expiresInMs?: number;
  now?: Date;
}

/** A signing key must be one `root` lists for `role`: caught here, on the offline machine, rather than at import. */
function requireListed(root: Metadata<Root>, role: OfflineRole, key: RoleKey, rootFile: string): void {
  if (!root.signed.roles[role]?.keyIDs.includes(key.key.keyID)) {
    throw new TufError(
      'MESH_ERR_TUF_KEY_NOT_LISTED',
      `root v${root.signed.version} (${rootFile}) does not list ${role} key ${key.key.keyID}; it lists [${root.signed.roles[role]?.keyIDs.join(', ')}]`,
    );
  }
}

/** `tuf sign-targets`: top-level targets version current+1 holding only the publisher delegation. */
export function signTargets(input: SignTargetsInput): {
  version: number;
  out: string;
  delegatedPaths: string[];
  publisherKeyid: string;
  signedBy: string[];
  status: ThresholdStatus;
} {
  const online = readOnlineKeys(input.onlineKeysFile);
  const signers: RoleKey[] = (input.signKeyFiles ?? []).map((f) => loadKeyFile(f, 'targets'));
  if (input.keysDir) signers.push(privateKeyIn(input.keysDir, 'targets'));
  const root = readRootFile(input.rootFile);
  for (const signer of signers) requireListed(root, 'targets', signer, input.rootFile);
  const paths = input.delegatePaths && input.delegatePaths.length > 0 ? input.delegatePaths : [...DEFAULT_DELEGATED_PATHS];
  const now = input.now ?? new Date();
  const targets = new Targets({
    version: online.versions.targets + 1,
    specVersion: TUF_SPEC_VERSION,
    expires: expiresAfter(input.expiresInMs ?? LIFETIME_MS.targets, now),
    delegations: publisherDelegation(online.publisher, paths),
  });
  const md = new Metadata(targets);
  for (const signer of signers) signMetadata(md, signer, true);
  writeFileAtomicSync(input.out, serialize(md), { mode: PUBLIC_FILE_MODE });
  return {
    version: targets.version,
    out: path.resolve(input.out),
    delegatedPaths: paths,
    publisherKeyid: online.publisher.keyID,
    signedBy: Object.keys(md.signatures),
    status: thresholdStatus(root, 'targets', md),
  };
}

export interface SignatureProgress {
  out: string;
  role: OfflineRole;
  version: number;
  /** Key ids of every signature in the file (valid or not; `tuf import` checks them). */
  signatures: string[];
  /** Root files: against their own root role (spec 5.3.4 (2)) and, with `rootFile`, the current root's (5.3.4 (1)). Targets files: against `rootFile`. */
  thresholds: ThresholdStatus[];
}

function progress(out: string, role: OfflineRole, md: Metadata<Root> | Metadata<Targets>, current: Metadata<Root> | undefined): SignatureProgress {
  const thresholds: ThresholdStatus[] = [];
  if (role === 'root') thresholds.push(thresholdStatus(md as Metadata<Root>, 'root', md));
  if (current) thresholds.push(thresholdStatus(current, role, md));
  return { out: path.resolve(out), role, version: md.signed.version, signatures: Object.keys(md.signatures), thresholds };
}

export interface SignFileInput {
  keyFile: string;
  inFile: string;
  /** Default: `inFile`, rewritten in place. */
  out?: string;
  /** The current root (for a new root: its previous version; for targets: the root that lists the targets keys). */
  rootFile?: string;
}

/**
 * `tuf sign`: one holder adds their signature over the canonical JSON of "signed" (spec 4.2)
 * to a root or targets file, on their own machine. Signing again with the same key replaces
 * the signature by an identical one (ed25519 is deterministic), so it is idempotent.
 */
export function signFile(input: SignFileInput): SignatureProgress & { keyid: string; alreadySigned: boolean } {
  const { kind, md: parsed } = parseSignedFile<Root | Targets>(fs.readFileSync(input.inFile), input.inFile, ['root', 'targets']);
  const md = parsed as OfflineMetadata;
  const current = input.rootFile ? readRootFile(input.rootFile) : undefined;
  const key = loadKeyFile(input.keyFile, kind);
  if (kind === 'root') {
    const own = (md as Metadata<Root>).signed.roles.root?.keyIDs.includes(key.key.keyID) ?? false;
    if (!own && !current?.signed.roles.root?.keyIDs.includes(key.key.keyID)) {
      throw new TufError(
        'MESH_ERR_TUF_KEY_NOT_LISTED',
        `root v${md.signed.version} (${input.inFile}) does not list root key ${key.key.keyID}` +
          (current ? ` and neither does root v${current.signed.version} (${input.rootFile})` : `; if it is a key of the current root, give that root with --root FILE`),
      );
    }
  } else if (current) {
    requireListed(current, 'targets', key, input.rootFile!);
  }
  const alreadySigned = md.signatures[key.key.keyID] !== undefined;
  signMetadata(md, key, true);
  const out = input.out ?? input.inFile;
  writeFileAtomicSync(out, serialize(md), { mode: PUBLIC_FILE_MODE });
  return { ...progress(out, kind, md, current), keyid: key.key.keyID, alreadySigned };
}

/**
 * `tuf merge-signatures`: the union of the signatures of copies of one file that holders
 * signed in parallel. Every input must carry the same "signed" (compared as canonical JSON,
 * spec 4.2), and one key id never carries two different signatures.
 */
export function mergeSignatures(input: { inFiles: string[]; out: string; rootFile?: string }): SignatureProgress {
  if (input.inFiles.length === 0) throw new TufError('MESH_ERR_TUF_MERGE_MISMATCH', 'no files to merge');
  const parsed = input.inFiles.map((f) => {
    const { kind, md } = parseSignedFile<Root | Targets>(fs.readFileSync(f), f, ['root', 'targets']);
    return { file: f, kind, md: md as OfflineMetadata };
  });
  const first = parsed[0]!;
  const signed = canonicalize(first.md.signed.toJSON());
  for (const p of parsed.slice(1)) {
    if (canonicalize(p.md.signed.toJSON()) !== signed) {
      throw new TufError(
        'MESH_ERR_TUF_MERGE_MISMATCH',
        `${p.file} does not hold the same signed ${p.kind} metadata as ${first.file}: each holder must sign the file \`sign-${first.kind}\` wrote`,
      );
    }
    for (const [keyid, sig] of Object.entries(p.md.signatures)) {
      const seen = first.md.signatures[keyid];
      if (seen && seen.sig !== sig.sig) throw new TufError('MESH_ERR_TUF_MERGE_MISMATCH', `${p.file} and an earlier file hold different signatures by key ${keyid}`);
      first.md.signatures[keyid] = sig;
    }
  }
  writeFileAtomicSync(input.out, serialize(first.md), { mode: PUBLIC_FILE_MODE });
  return progress(input.out, first.kind, first.md, input.rootFile ? readRootFile(input.rootFile) : undefined);
}

/** `tuf status`: the k of n keys the root in `rootFile` requires for root and targets. */
export function trustedThresholds(rootFile: string): Record<OfflineRole, { threshold: number; keyids: string[] }> {
  const root = readRootFile(rootFile).signed.roles;
  const of = (r: OfflineRole) => ({ threshold: root[r]?.threshold ?? 0, keyids: [...(root[r]?.keyIDs ?? [])] });
  return { root: of('root'), targets: of('targets') };
}

export type { PublicKeyExport };
