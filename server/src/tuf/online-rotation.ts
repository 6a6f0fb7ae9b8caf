// Rotating the online keys (snapshot, timestamp, publisher) under offline root and targets
// keys (TUF spec 6.1 "Key management and migration"; issue 29). A new snapshot or timestamp key
// needs a new root version and a new publisher key a new top-level targets version, both
// signed offline, so the rotation is staged:
//  1. `tuf rotate-online --stage` creates the new keys as <keys>/pending-ROLE.pem (never used
//     to sign yet) and the pending.json manifest (written last: a crash part-way leaves no
//     staged rotation, only leftovers that the next stage removes), and exports their public
//     halves in the `tuf online-keys` format for `tuf sign-root` / `tuf sign-targets`.
//  2. `tuf import --root --targets` with metadata naming the pending keys activates them in
//     one import: targets and a publisher version delegating to the new key, every bin and
//     snapshot signed with the new keys, the new root, then timestamp.json (the commit point,
//     commit.ts). Devices update root first and verify timestamp and snapshot with the new
//     root's keys (spec 5.3, 5.3.11), then targets -> publisher -> bins.
//     The snapshot and timestamp of that commit, and of a commit just before it, carry the
//     signatures of both the old and the new keys (a bridge): files are fetched one by one, so
//     a device may read the new root with the previous timestamp, or the old root with the new
//     timestamp; either way it verifies (spec 5.4.2, 5.5.3 ask for a threshold of the keys the
//     trusted root lists; a signature by another key does not count, nor does it spoil the
//     others), and no assignment fails because the rotation happened under it.
//  3. After the commit each pending key is renamed over the active one (the old private key
//     is unlinked) and the manifest removed. Until then, also after a crash, the signing code
//     takes whichever of the two keys the trusted metadata lists (key-custody.ts), and the next
//     open of the data dir finishes the renames (`promotePendingKeys`).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Metadata, MetadataKind, Targets, Timestamp, type Root, type Snapshot } from '@tufjs/models';
import { fsyncDirSync, PRIVATE_FILE_MODE, renameDurableSync, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';
import { allBinNames, binsDelegation, binsOf, readBin } from './bins.js';
import { buildCandidate, writeCandidate, type Candidate, type RepositoryChange } from './commit.js';
import { publisherRole } from './delegation.js';
import { TufError } from './errors.js';
import { onlineKeysExport, type OnlineKeysExport } from './key-custody.js';
import { exportPublicKey, generateKeyFile, loadOrCreateRoleKey, readRoleKey, signMetadata, type RoleKey } from './keys.js';
import { expiresAt, PUBLISHER_ROLE } from './lifetimes.js';
import { metaFileFor, serialize, TUF_SPEC_VERSION, type MetadataFiles } from './metadata-files.js';
import { pendingKeyFile, readPendingKey } from './pending-keys.js';
import { readState, type RepositoryState, type RepositoryVersions } from './state.js';
import { lookupsFor, verifyCandidate } from './verification-gate.js';

/** The roles `tuf rotate-online` replaces together. */
export const ONLINE_ROLES = ['snapshot', 'timestamp', PUBLISHER_ROLE] as const;
export type OnlineRole = (typeof ONLINE_ROLES)[number];

export const PENDING_MANIFEST = 'pending.json';

/** <keys>/pending.json: a staged rotation exists exactly when this file does. */
export interface PendingRotation {
  stagedAt: string;
  /** The active keys the rotation replaces. */
  replaces: Record<OnlineRole, string>;
  /** The pending keys. */
  keyids: Record<OnlineRole, string>;
  /** Root and targets versions at staging: the offline machine signs current + 1. */
  versions: { root: number; targets: number };
}

/** What an import that named the pending keys activated (the audit event's details). */
export interface OnlineKeyActivation {
  replaced: Record<OnlineRole, string>;
  keyids: Record<OnlineRole, string>;
  stagedAt: string;
}

function manifestFile(keysDir: string): string {
  return path.join(keysDir, PENDING_MANIFEST);
}

export function readPendingRotation(keysDir: string): PendingRotation | undefined {
  const file = manifestFile(keysDir);
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as PendingRotation;
  } catch (err) {
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `cannot read the staged online-key rotation ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** The current export with the pending public keys in place of the active ones. */
function exportOf(keysDir: string, state: RepositoryState): OnlineKeysExport {
  const current = onlineKeysExport(keysDir, state);
  const keys = Object.fromEntries(
    ONLINE_ROLES.map((role) => {
      const key = readPendingKey(keysDir, role);
      if (!key) throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `the staged rotation lists a pending ${role} key but ${pendingKeyFile(keysDir, role)} is missing`);
      return [role, exportPublicKey(key.key)];
    }),
  ) as OnlineKeysExport['keys'];
  return { ...current, keys };
}

function keyidsOf(exported: OnlineKeysExport): Record<OnlineRole, string> {
  return { snapshot: exported.keys.snapshot.keyid, timestamp: exported.keys.timestamp.keyid, publisher: exported.keys.publisher.keyid };
}

/** Which trusted metadata names `role`'s key: root for snapshot/timestamp, top-level targets for publisher. */
function listedKeyIDs(role: OnlineRole, root: Root, targets: Targets): { keyIDs: string[]; threshold: number } | undefined {
  const listed = role === PUBLISHER_ROLE ? publisherRole(targets) : root.roles[role];
  return listed ? { keyIDs: listed.keyIDs, threshold: listed.threshold } : undefined;
}

/**
 * `tuf rotate-online --stage`: new pending keys and their export. Refused while another
 * rotation is staged (one at a time: the offline signers work from exactly one export).
 */
export function stageRotation(keysDir: string, state: RepositoryState, now: Date): { pending: PendingRotation; exported: OnlineKeysExport } {
  const staged = readPendingRotation(keysDir);
  if (staged) {
    throw new MeshError(
      'MESH_ERR_TUF_ROTATION_PENDING',
      `an online-key rotation staged at ${staged.stagedAt} is pending (snapshot ${staged.keyids.snapshot}): import the root and targets signed for it, re-export it with \`tuf rotate-online --export\`, or drop it with \`tuf rotate-online --abandon\``,
    );
  }
  if (!state.publisher) throw new MeshError('MESH_ERR_TUF_ROTATION_NONE', 'the repository has no publisher delegation yet; run `tuf import` for one before rotating online keys');
  const active = onlineKeysExport(keysDir, state);
  // Leftovers of a stage that crashed before its manifest: never exported, so nothing signed names them.
  for (const role of ONLINE_ROLES) fs.rmSync(pendingKeyFile(keysDir, role), { force: true });
  for (const role of ONLINE_ROLES) generateKeyFile(pendingKeyFile(keysDir, role), role);
  const exported = exportOf(keysDir, state);
  const pending: PendingRotation = { stagedAt: now.toISOString(), replaces: keyidsOf(active), keyids: keyidsOf(exported), versions: exported.versions };
  writeFileAtomicSync(manifestFile(keysDir), JSON.stringify(pending, null, 2) + '\n', { mode: PRIVATE_FILE_MODE });
  return { pending, exported };
}

/** `tuf rotate-online --export`: the staged rotation's export again (for the offline machine). */
export function exportPendingRotation(keysDir: string, state: RepositoryState): { pending: PendingRotation; exported: OnlineKeysExport } {
  const pending = readPendingRotation(keysDir);
  if (!pending) throw new MeshError('MESH_ERR_TUF_ROTATION_NONE', 'no online-key rotation is staged (start one with `tuf rotate-online --stage`)');
  return { pending, exported: exportOf(keysDir, state) };
}

/** `tuf rotate-online --abandon`: deletes the pending keys; refused once trusted metadata names one (then it is being activated). */
export function abandonRotation(keysDir: string, state: RepositoryState): PendingRotation {
  const pending = readPendingRotation(keysDir);
  if (!pending) throw new MeshError('MESH_ERR_TUF_ROTATION_NONE', 'no online-key rotation is staged; nothing to abandon');
  const root = state.root.metadata.signed;
  const targets = state.targets.metadata.signed;
  const inUse = ONLINE_ROLES.filter((role) => listedKeyIDs(role, root, targets)?.keyIDs.includes(pending.keyids[role]));
  if (inUse.length > 0)
    throw new MeshError('MESH_ERR_TUF_ROTATION_PENDING', `the trusted metadata already names the pending ${inUse.join(', ')} key(s): the rotation is active, not abandonable`);
  // Manifest first: without it the files are leftovers, removed now or by the next stage.
  fs.rmSync(manifestFile(keysDir));
  fsyncDirSync(keysDir);
  for (const role of ONLINE_ROLES) fs.rmSync(pendingKeyFile(keysDir, role), { force: true });
  fsyncDirSync(keysDir);
  return pending;
}

/**
 * Which set of online keys an imported root (snapshot, timestamp) and targets (publisher)
 * name: all the active ones (an ordinary ceremony) or all the pending ones (activation).
 * Anything else is refused: a key this server does not hold, a threshold other than 1 of one
 * key, or a mix (a rotation is activated whole, so no device ever trusts half of it).
 */
export function checkImportedOnlineKeys(keysDir: string, root: Root, targets: Targets, roles: readonly OnlineRole[] = ONLINE_ROLES): OnlineKeyActivation | undefined {
  const pending = readPendingRotation(keysDir);
  const sets = roles.map((role) => {
    const listed = listedKeyIDs(role, root, targets);
    const active = readRoleKey(keysDir, role)?.key.keyID;
    const only = listed?.keyIDs.length === 1 && listed.threshold === 1 ? listed.keyIDs[0] : undefined;
    // Pending first: after a crash part-way through the renames a promoted key is both.
    if (only !== undefined && pending && only === pending.keyids[role]) return 'pending';
    if (only !== undefined && only === active) return 'active';
    // Worded as before rotations existed (operators and tests match on it), plus the pending key.
    const where = role === PUBLISHER_ROLE ? `targets v${targets.version}` : `root v${root.version}`;
    throw new TufError(
      'MESH_ERR_TUF_IMPORT_ONLINE_KEYS',
      `${where} must list this server's ${role} key ${active ?? '(missing)'} with threshold 1, or the pending ${role} key of a staged rotation (${pending ? pending.keyids[role] : 'none is staged'}); it lists [${listed?.keyIDs.join(', ') ?? ''}] with threshold ${listed?.threshold}: export the keys with \`tuf online-keys\` or \`tuf rotate-online --export\``,
    );
  });
  if (sets.every((s) => s === 'active')) return undefined;
  if (sets.every((s) => s === 'pending') && roles.length === ONLINE_ROLES.length) return { replaced: pending!.replaces, keyids: pending!.keyids, stagedAt: pending!.stagedAt };
  if (sets.every((s) => s === 'pending')) return undefined;
  const mix = roles.map((role, i) => `${role}=${sets[i]}`).join(', ');
  throw new TufError(
    'MESH_ERR_TUF_IMPORT_ONLINE_KEYS',
    `the imported metadata mixes active and pending online keys (${mix}): a rotation activates snapshot, timestamp and publisher together; import the root and the targets signed from the same \`tuf rotate-online\` export in one command`,
  );
}

/** The publisher key id an imported targets version may delegate to: the pending one when it names it, else the active one. */
export function importablePublisherKeyID(keysDir: string, targets: Targets): string {
  const pending = readPendingRotation(keysDir)?.keyids.publisher;
  if (pending && publisherRole(targets)?.keyIDs.includes(pending)) return pending;
  return loadOrCreateRoleKey(keysDir, PUBLISHER_ROLE).key.keyID;
}

/**
 * A change whose new top-level targets delegates to another publisher key must bring a
 * publisher version signed by that key, delegating its bins to it, and every bin re-signed
 * with it: otherwise a device stops at the first role the new key cannot verify (spec 5.6).
 */
export function withPublisherKeyChange(files: MetadataFiles, state: RepositoryState, change: RepositoryChange, now: Date): RepositoryChange {
  const targets = change.targets instanceof Metadata ? change.targets.signed : change.targets;
  const next = targets ? publisherRole(targets) : undefined;
  const current = publisherRole(state.targets.metadata.signed);
  if (!targets || !next || !current || !state.publisher || next.keyIDs.join() === current.keyIDs.join()) return change;
  const key = targets.delegations!.keys[next.keyIDs[0]!]!;
  const publisher = state.publisher.metadata.signed;
  const renew = (t: Targets, delegations?: Targets['delegations']): Targets =>
    new Targets({ version: t.version + 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt(PUBLISHER_ROLE, now), targets: t.targets, ...(delegations ? { delegations } : {}) });
  const succinct = binsOf(state);
  const bins: Record<string, Targets> = {};
  if (succinct) for (const name of allBinNames(succinct)) bins[name] = renew(readBin(files, state, name).metadata.signed);
  return {
    ...change,
    publisher: renew(publisher, succinct ? binsDelegation(key) : publisher.delegations),
    ...(succinct ? { bins } : {}),
    snapshot: true,
  };
}

/**
 * Renames every pending key the trusted metadata lists over the active key of its role (the
 * old private key is unlinked), then removes the manifest once no pending key is left. Runs
 * right after the activating commit and on every open of the data dir (crash recovery).
 * Returns the roles promoted.
 */
export function promotePendingKeys(keysDir: string, state: RepositoryState): OnlineRole[] {
  const pending = readPendingRotation(keysDir);
  if (!pending) return [];
  const root = state.root.metadata.signed;
  const targets = state.targets.metadata.signed;
  const promoted: OnlineRole[] = [];
  for (const role of ONLINE_ROLES) {
    const file = pendingKeyFile(keysDir, role);
    if (!fs.existsSync(file) || !listedKeyIDs(role, root, targets)?.keyIDs.includes(pending.keyids[role])) continue;
    renameDurableSync(file, path.join(keysDir, `${role}.pem`));
    promoted.push(role);
  }
  if (ONLINE_ROLES.every((role) => !fs.existsSync(pendingKeyFile(keysDir, role)))) {
    fs.rmSync(manifestFile(keysDir), { force: true });
    fsyncDirSync(keysDir);
  }
  return promoted;
}

/** A change that installs a root naming the staged snapshot and timestamp keys. */
export function activates(keysDir: string, change: RepositoryChange): boolean {
  const pending = readPendingRotation(keysDir);
  return !!pending && !!change.root && change.root.signed.roles.snapshot?.keyIDs.includes(pending.keyids.snapshot) === true;
}

/** The two keys of a role during a rotation: the active and the pending one, by key id. */
function bothKeys(keysDir: string, role: 'snapshot' | 'timestamp'): Map<string, RoleKey> {
  const keys = new Map<string, RoleKey>();
  for (const key of [readRoleKey(keysDir, role), readPendingKey(keysDir, role)]) if (key) keys.set(key.key.keyID, key);
  return keys;
}

/**
 * Adds to the candidate's snapshot and timestamp the signature of the role's other key (the
 * pending one when it was signed with the active one, and the reverse). The timestamp is
 * re-signed because the snapshot's bytes, which it hashes, change.
 */
export function withBridgeSignatures(keysDir: string, candidate: Candidate): Candidate {
  const files = [...candidate.files];
  const snapshotAt = files.findIndex(([name]) => /^[0-9]+\.snapshot\.json$/.test(name));
  const timestampAt = files.findIndex(([name]) => name === 'timestamp.json');
  if (snapshotAt < 0 || timestampAt < 0) throw new MeshError('MESH_ERR_TUF_SIGNING_FAILED', 'an online-key activation must re-sign snapshot and timestamp');
  const signAll = (md: Metadata<Snapshot> | Metadata<Timestamp>, role: 'snapshot' | 'timestamp', signedBy: string): void => {
    const keys = bothKeys(keysDir, role);
    const first = keys.get(signedBy);
    if (!first || keys.size !== 2) throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `an online-key activation needs both the active and the pending ${role} key in the data dir`);
    signMetadata(md, first);
    for (const key of keys.values()) if (key !== first) signMetadata(md, key, true);
  };
  const snapshot = Metadata.fromJSON(MetadataKind.Snapshot, JSON.parse(files[snapshotAt]![1].toString('utf8')) as Parameters<typeof Metadata.fromJSON>[1]);
  signAll(snapshot, 'snapshot', Object.keys(snapshot.signatures)[0]!);
  const snapshotBytes = serialize(snapshot);
  files[snapshotAt] = [files[snapshotAt]![0], snapshotBytes];
  const signed = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(files[timestampAt]![1].toString('utf8')) as Parameters<typeof Metadata.fromJSON>[1]);
  const { version, specVersion, expires } = signed.signed;
  const timestamp = new Metadata(new Timestamp({ version, specVersion, expires, snapshotMeta: metaFileFor(snapshot.signed.version, snapshotBytes) }));
  signAll(timestamp, 'timestamp', Object.keys(signed.signatures)[0]!);
  files[timestampAt] = ['timestamp.json', serialize(timestamp)];
  return { ...candidate, files };
}

/**
 * The activating commit, in two steps under the same write lock, each verified by the device's
 * TUF client before it is written (verification-gate.ts):
 *  1. snapshot and timestamp re-signed, unchanged, by the old and the new keys: once it is
 *     live, a device that reads the new root before the new timestamp still verifies;
 *  2. targets, publisher, bins, the new root and then timestamp, snapshot and timestamp again
 *     signed by both: a device still on the old root that reads the new timestamp verifies it
 *     too (checked below by a client that is not given the new root, when the targets keys are
 *     unchanged; with new targets keys no old-root client can verify the new targets anyway).
 */
export async function commitActivation(keysDir: string, files: MetadataFiles, state: RepositoryState, change: RepositoryChange, now: Date): Promise<RepositoryVersions> {
  const bridge = withBridgeSignatures(keysDir, buildCandidate(keysDir, state, { snapshot: true }, now));
  await verifyCandidate(files, state, bridge, lookupsFor(state, { snapshot: true }, []));
  writeCandidate(files, bridge);
  const bridged = readState(files);
  const full = withPublisherKeyChange(files, bridged, change, now);
  const candidate = withBridgeSignatures(keysDir, buildCandidate(keysDir, bridged, full, now));
  const lookups = lookupsFor(bridged, full, []);
  await verifyCandidate(files, bridged, candidate, lookups);
  const newRoot = change.root!.signed;
  if (newRoot.roles.targets?.keyIDs.join() === bridged.root.metadata.signed.roles.targets?.keyIDs.join()) {
    // One walk down to a bin is enough here: the bins are the same files the check above walked.
    await verifyCandidate(files, bridged, { ...candidate, files: candidate.files.filter(([name]) => !name.endsWith('root.json')) }, lookups.slice(0, 1));
  }
  return writeCandidate(files, candidate);
}
