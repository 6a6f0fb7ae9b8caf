// Installing root and/or top-level targets versions signed elsewhere (the offline ceremony,
// TUF spec 6.1). Every check runs before the first write, so a refusal changes nothing:
// - root: version current+1 (spec 5.3.5), unexpired, consistent snapshots, and signed by a
//   threshold of the current root's root keys AND a threshold of its own (spec 5.3.4: "Version
//   N+1 of the root metadata file MUST have been signed by: (1) a threshold of keys specified
//   in the trusted root metadata file (version N), and (2) a threshold of keys specified in the
//   new root metadata file"). Thresholds count valid signatures from distinct keys
//   (threshold.ts); a refusal names the key ids still missing. When the current root key is
//   still in the data dir — the embedded default — the server adds that signature itself. The
//   new root must name the snapshot and timestamp keys this server holds.
// - targets: version current+1, unexpired, signed by the (new) root's targets threshold, any
//   target it lists directly carrying a signed intent (signed-intent.ts), and only the
//   publisher delegation described in delegation.ts.
// Then snapshot and timestamp are re-signed, and online root/targets private keys that the
// new root no longer lists are deleted.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Metadata, Targets, type Root } from '@tufjs/models';
import type { RepositoryChange } from './commit.js';
import { checkImportedDelegation } from './delegation.js';
import { TufError } from './errors.js';
import { onlineRoleKey } from './key-custody.js';
import { readRoleKey, signMetadata } from './keys.js';
import { expiresAt, TUF_ROLES, type TufRole } from './lifetimes.js';
import { checkImportedOnlineKeys, importablePublisherKeyID, type OnlineKeyActivation } from './online-rotation.js';
import { TUF_SPEC_VERSION } from './metadata-files.js';
import { requireImportedIntents, requireSafeImportedPaths } from './signed-intent.js';
import type { RepositoryState, RepositoryVersions } from './state.js';
import { aliasedKeyIds, describeThreshold, parseSignedFile, thresholdStatus, type ThresholdStatus } from './threshold.js';

export interface ImportInput {
  root?: Buffer;
  targets?: Buffer;
}

export interface ImportResult {
  root?: {
    version: number;
    keyids: Record<string, string[]>;
    thresholds: { root: number; targets: number };
    /** Root keys of the new root whose signatures count (distinct keys), and of the current root. */
    signedBy: string[];
    signedByCurrentRoot: string[];
    addedCurrentRootSignature: boolean;
  };
  targets?: { version: number; delegatedPaths: string[]; signedBy: string[] };
  /** Online copies of root/targets private keys deleted because the new root no longer trusts them. */
  removedOnlineKeys: TufRole[];
  /** Set when the import named the keys staged by `tuf rotate-online`: they replace the active ones. */
  activatedOnlineKeys?: OnlineKeyActivation;
  versions: RepositoryVersions;
}

function parseImported<T extends Root | Targets>(kind: 'root' | 'targets', bytes: Buffer, what: string): Metadata<T> {
  return parseSignedFile<T>(bytes, what, [kind]).md;
}

/**
 * Refuses unless `md` meets `delegator`'s `role` threshold, counted over distinct keys; tufjs's
 * own check (key ids) runs too, so neither count alone decides. The refusal names the missing key ids.
 */
function requireThreshold(
  code: 'MESH_ERR_TUF_IMPORT_SIGNATURE' | 'MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE',
  what: string,
  delegator: Metadata<Root>,
  role: 'root' | 'targets',
  md: Metadata<Root> | Metadata<Targets>,
  hint = '',
): ThresholdStatus {
  const status = thresholdStatus(delegator, role, md);
  let tufjs: Error | undefined;
  try {
    delegator.verifyDelegate(role, md);
  } catch (err) {
    tufjs = err as Error;
  }
  if (!status.met || tufjs) {
    throw new TufError(code, `${what}: ${describeThreshold(status)}${hint}`, { ...(tufjs ? { cause: tufjs } : {}), details: { ...status } });
  }
  return status;
}

/**
 * Checks `input` against `state` (read and migrated under the write lock; `context.published`
 * = every target path it signs, none of which a new delegation may orphan), runs `onInstalled`
 * (the audit event: if it fails, nothing is installed), then commits.
 */
export async function importSigned(
  keysDir: string,
  state: RepositoryState,
  input: ImportInput,
  now: Date,
  context: { published: readonly string[]; onInstalled: ((result: ImportResult) => unknown) | undefined },
  commit: (state: RepositoryState, change: RepositoryChange) => Promise<RepositoryVersions>,
): Promise<ImportResult> {
  const current = state.root.metadata;
  let trustedRoot = current;
  let rootResult: ImportResult['root'];
  if (input.root) {
    const md = parseImported<Root>('root', input.root, 'the root file');
    const version = md.signed.version;
    if (version !== current.signed.version + 1) {
      throw new TufError('MESH_ERR_TUF_IMPORT_VERSION', `root version ${version} is not the current version ${current.signed.version} + 1`);
    }
    if (md.signed.isExpired(now)) throw new TufError('MESH_ERR_TUF_IMPORT_EXPIRED', `root v${version} expired at ${md.signed.expires}`);
    if (!md.signed.consistentSnapshot)
      throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `root v${version} must set consistent_snapshot: true (this repository serves VERSION.ROLE.json)`);
    for (const role of TUF_ROLES) {
      const alias = aliasedKeyIds(md.signed, role)[0];
      if (alias) {
        throw new TufError(
          'MESH_ERR_TUF_IMPORT_INVALID',
          `root v${version} lists ${role} key ${alias.keyid}, the same public key as ${alias.sameKeyAs}: agents count key ids toward a threshold, so one holder would count twice (spec 5.3.4)`,
        );
      }
    }
    const own = requireThreshold('MESH_ERR_TUF_IMPORT_SIGNATURE', `root v${version} is not signed by a threshold of its own root keys (spec 5.3.4 (2))`, md, 'root', md);
    let added = false;
    const previousHint = `; each holder of a current root key adds theirs with \`tuf sign --key KEY --in FILE\``;
    let previous = thresholdStatus(current, 'root', md);
    if (!previous.met) {
      // The embedded default: the current root key is in the data dir, so the server signs (spec 5.3.4 (1)).
      const held = onlineRoleKey(keysDir, 'root', current.signed.roles.root);
      if (held && !md.signatures[held.key.keyID]) {
        signMetadata(md, held, true);
        added = true;
      }
    }
    previous = requireThreshold(
      'MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE',
      `root v${version} is not signed by a threshold of the current root v${current.signed.version} keys (spec 5.3.4 (1))`,
      current,
      'root',
      md,
      previousHint,
    );
    // Snapshot and timestamp keys: the active ones, or the pending ones of a staged rotation (online-rotation.ts).
    checkImportedOnlineKeys(keysDir, md.signed, state.targets.metadata.signed, ['snapshot', 'timestamp']);
    trustedRoot = md;
    rootResult = {
      version,
      keyids: Object.fromEntries(TUF_ROLES.map((r) => [r, [...(md.signed.roles[r]?.keyIDs ?? [])]])),
      thresholds: { root: md.signed.roles.root!.threshold, targets: md.signed.roles.targets!.threshold },
      signedBy: added ? thresholdStatus(md, 'root', md).signedBy : own.signedBy,
      signedByCurrentRoot: previous.signedBy,
      addedCurrentRootSignature: added,
    };
  }
  let newTargets: Metadata<Targets> | undefined;
  let targetsResult: ImportResult['targets'];
  if (input.targets) {
    const md = parseImported<Targets>('targets', input.targets, 'the targets file');
    const version = md.signed.version;
    const currentVersion = state.targets.metadata.signed.version;
    if (version !== currentVersion + 1) throw new TufError('MESH_ERR_TUF_IMPORT_VERSION', `targets version ${version} is not the current version ${currentVersion} + 1`);
    if (md.signed.isExpired(now)) throw new TufError('MESH_ERR_TUF_IMPORT_EXPIRED', `targets v${version} expired at ${md.signed.expires}`);
    const signed = requireThreshold(
      'MESH_ERR_TUF_IMPORT_SIGNATURE',
      `targets v${version} is not signed by a threshold of the targets keys of root v${trustedRoot.signed.version}`,
      trustedRoot,
      'targets',
      md,
    );
    // Targets listed directly, not through the publisher delegation: each must carry the intent agents require.
    requireSafeImportedPaths(version, md.signed.targets);
    requireImportedIntents(version, md.signed.targets);
    const role = checkImportedDelegation(md.signed, importablePublisherKeyID(keysDir, md.signed), context.published);
    newTargets = md;
    targetsResult = { version, delegatedPaths: [...(role.paths ?? [])], signedBy: signed.signedBy };
  } else {
    try {
      trustedRoot.verifyDelegate('targets', state.targets.metadata);
    } catch (err) {
      throw new TufError(
        'MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED',
        `the current targets v${state.targets.metadata.signed.version} does not verify under root v${trustedRoot.signed.version}: import the targets version signed by the new targets key in the same command`,
        { cause: err },
      );
    }
    if (!state.publisher) {
      throw new TufError('MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED', 'top-level targets has no publisher delegation yet: import a targets version that adds it');
    }
  }
  // A legacy repository whose targets key was never online here: publisher v1 holds what
  // top-level targets listed, so nothing published is orphaned by the new delegation.
  const publisher =
    newTargets && !state.publisher
      ? new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now), targets: state.targets.metadata.signed.targets })
      : undefined;
  const activatedOnlineKeys = checkImportedOnlineKeys(keysDir, trustedRoot.signed, newTargets?.signed ?? state.targets.metadata.signed);
  const removedOnlineKeys = (['root', 'targets'] as const).filter((r) => {
    const held = readRoleKey(keysDir, r);
    return held !== undefined && !trustedRoot.signed.roles[r]?.keyIDs.includes(held.key.keyID);
  });
  const provisional: ImportResult = {
    ...(rootResult ? { root: rootResult } : {}),
    ...(targetsResult ? { targets: targetsResult } : {}),
    removedOnlineKeys,
    ...(activatedOnlineKeys ? { activatedOnlineKeys } : {}),
    versions: {
      root: trustedRoot.signed.version,
      targets: newTargets?.signed.version ?? state.targets.metadata.signed.version,
      snapshot: state.snapshot.metadata.signed.version + 1,
      timestamp: state.timestamp.metadata.signed.version + 1,
    },
  };
  // Inside the write lock and before any file changes: if the audit insert fails, nothing is installed.
  await context.onInstalled?.(provisional);
  const versions = await commit(state, {
    ...(newTargets ? { targets: newTargets } : {}),
    ...(publisher ? { publisher } : {}),
    snapshot: true,
    ...(input.root ? { root: trustedRoot } : {}),
  });
  for (const r of removedOnlineKeys) fs.rmSync(path.join(keysDir, `${r}.pem`), { force: true });
  return { ...provisional, versions };
}
