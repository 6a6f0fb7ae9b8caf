// Gate (b) of "never sign what a device cannot verify" (issue 23): before a candidate is
// written, a device's own TUF client (tuf-js with the device configuration, from
// @meshanics/core/tuf-verify) refreshes against it from the root devices trust now, and looks
// up the targets that changed plus one path through every bin that changed, so each new role
// version is fetched, parsed, re-canonicalized and signature-checked exactly as on a device.
// A refusal throws before anything is written: files, versions and catalog stay as they were.
import * as fs from 'node:fs';
import { verifyAsDevice, type ExpectedTarget } from '@meshanics/core/tuf-verify';
import { MeshError } from '../errors.js';
import { probePathFor, type SuccinctRoles } from './bins.js';
import type { Candidate, RepositoryChange } from './commit.js';
import type { MetadataFiles } from './metadata-files.js';
import type { RepositoryState } from './state.js';

export type Lookup = { path: string; expect: ExpectedTarget };

/** The lookups that make a device load every role version the change creates. */
export function lookupsFor(state: RepositoryState, change: RepositoryChange, expected: readonly Lookup[]): Lookup[] {
  const lookups = [...expected];
  const succinct: SuccinctRoles | undefined = (change.publisher ?? state.publisher?.metadata.signed)?.delegations?.succinctRoles;
  if (!succinct) {
    // Pre-bins publisher: any of its targets walks top-level targets -> publisher.
    const any = Object.keys((change.publisher ?? state.publisher?.metadata.signed)?.targets ?? {})[0];
    if (lookups.length === 0 && any) lookups.push({ path: any, expect: undefined });
    return lookups;
  }
  const reached = new Set(lookups.map((l) => succinct.getRoleForTarget(l.path)));
  for (const [name, bin] of Object.entries(change.bins ?? {})) {
    if (reached.has(name)) continue;
    lookups.push({ path: Object.keys(bin.targets)[0] ?? probePathFor(succinct, name), expect: undefined });
  }
  // A changed publisher (or top-level targets) with no bin change is still walked through once.
  if (lookups.length === 0) {
    const first = succinct.getRoles().next().value as string;
    lookups.push({ path: probePathFor(succinct, first), expect: undefined });
  }
  return lookups;
}

export async function verifyCandidate(files: MetadataFiles, state: RepositoryState, candidate: Candidate, lookups: readonly Lookup[]): Promise<void> {
  const byName = new Map(candidate.files);
  const file = (name: string): Uint8Array | undefined => {
    const bytes = byName.get(name);
    if (bytes) return bytes;
    // Unchanged roles are read from disk, as the artifact server would serve them.
    try {
      return fs.readFileSync(files.file(name));
    } catch {
      return undefined;
    }
  };
  try {
    await verifyAsDevice({ trustedRoot: state.root.bytes, file, targets: lookups });
  } catch (err) {
    throw new MeshError(
      'MESH_ERR_TUF_CANDIDATE_UNVERIFIABLE',
      `refused: the TUF metadata this change would sign does not verify with the device's TUF client (${(err as Error).message}); nothing was changed`,
      { cause: err },
    );
  }
}
