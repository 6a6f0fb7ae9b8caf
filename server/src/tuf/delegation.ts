// The one delegation this repository uses (TUF spec 4.5 "delegations"): top-level targets,
// whose key may be offline, delegates a narrow slice of target names to the online
// "publisher" role, terminating (spec 5.6.7.2.1: a terminating delegation stops the search,
// so no later delegation can claim a name the publisher was given, and the publisher cannot
// reach outside its slice). Artifact targets follow name/version/file, so a pattern is three
// path segments, each a shell-style glob matched per segment (spec 4.5 "paths").
import { Targets, type Key } from '@tufjs/models';
import { TufError } from './errors.js';
import { PUBLISHER_ROLE } from './lifetimes.js';

/** Every artifact target name/version/file, and nothing outside that layout. */
export const DEFAULT_DELEGATED_PATHS: readonly string[] = ['*/*/*'];

const SEGMENT = /^[A-Za-z0-9._*?-]+$/;

/** Why a path pattern is refused, or undefined when it is acceptable. */
export function pathPatternProblem(pattern: string): string | undefined {
  const segments = pattern.split('/');
  if (segments.length !== 3) return `"${pattern}" must have exactly three segments NAME/VERSION/FILE (the artifact target layout)`;
  for (const s of segments) {
    if (!SEGMENT.test(s)) return `"${pattern}": segment "${s}" may only hold letters, digits, ".", "_", "-", "*" and "?"`;
    if (s === '.' || s === '..') return `"${pattern}": segment "${s}" is not a name`;
    // "**" means "any depth" to readers who know gitignore; here it would only match one segment.
    if (s.includes('**')) return `"${pattern}": segment "${s}" uses "**"; a pattern matches one segment per "/", use "*"`;
  }
  return undefined;
}

export function validatePathPatterns(paths: readonly string[]): void {
  if (paths.length === 0) throw new TufError('MESH_ERR_TUF_IMPORT_DELEGATION', 'the publisher delegation needs at least one path pattern');
  for (const p of paths) {
    const problem = pathPatternProblem(p);
    if (problem) throw new TufError('MESH_ERR_TUF_IMPORT_DELEGATION', `delegated path ${problem}`);
  }
}

// @tufjs/models does not export its Delegations/DelegatedRole classes, so the delegation is
// built from its spec JSON (spec 4.5) and parsed by the library, never serialized by hand.
export type Delegations = NonNullable<Targets['delegations']>;
export type DelegatedRole = NonNullable<Delegations['roles']>[string];

export function publisherDelegation(publisherKey: Key, paths: readonly string[]): Delegations {
  validatePathPatterns(paths);
  const json = {
    _type: 'targets',
    spec_version: '1.0.31',
    version: 1,
    expires: '2000-01-01T00:00:00Z',
    targets: {},
    delegations: {
      keys: { [publisherKey.keyID]: publisherKey.toJSON() },
      roles: [{ name: PUBLISHER_ROLE, keyids: [publisherKey.keyID], threshold: 1, terminating: true, paths: [...paths] }],
    },
  };
  return Targets.fromJSON(json).delegations!;
}

export function publisherRole(targets: Targets): DelegatedRole | undefined {
  return targets.delegations?.roles?.[PUBLISHER_ROLE];
}

/**
 * Checks a top-level targets version signed elsewhere: exactly one delegation, to the
 * publisher role, terminating, threshold 1 of the server's publisher key, paths within the
 * artifact layout, and covering every target already published (none may be orphaned).
 */
export function checkImportedDelegation(targets: Targets, publisherKeyID: string, publishedPaths: readonly string[]): DelegatedRole {
  const delegations = targets.delegations;
  const refuse = (why: string): never => {
    throw new TufError('MESH_ERR_TUF_IMPORT_DELEGATION', `targets v${targets.version}: ${why}`);
  };
  if (!delegations) return refuse('has no delegations; artifacts are published into a delegated "publisher" role');
  if (delegations.succinctRoles) refuse('uses succinct_roles; only one path delegation to "publisher" is supported');
  const names = Object.keys(delegations.roles ?? {});
  if (names.length !== 1 || names[0] !== PUBLISHER_ROLE) refuse(`must delegate to exactly one role "${PUBLISHER_ROLE}", found [${names.join(', ')}]`);
  const role = delegations.roles![PUBLISHER_ROLE]!;
  if (!role.terminating) refuse(`the "${PUBLISHER_ROLE}" delegation must be terminating (spec 5.6.7.2.1)`);
  if (role.pathHashPrefixes) refuse('path_hash_prefixes are not supported; delegate with "paths"');
  if (!role.paths) refuse('the delegation has no "paths"');
  try {
    validatePathPatterns(role.paths!);
  } catch (err) {
    refuse((err as Error).message);
  }
  if (!role.keyIDs.includes(publisherKeyID) || role.threshold !== 1) {
    refuse(`the delegation must be threshold 1 of this server's publisher key ${publisherKeyID} (got threshold ${role.threshold} of [${role.keyIDs.join(', ')}])`);
  }
  if (!delegations.keys[publisherKeyID]) refuse(`delegations.keys does not list the publisher key ${publisherKeyID}`);
  const orphaned = publishedPaths.filter((p) => !role.isDelegatedPath(p));
  if (orphaned.length > 0) {
    refuse(`paths [${role.paths!.join(', ')}] do not cover already published targets: ${orphaned.slice(0, 5).join(', ')}${orphaned.length > 5 ? ', ...' : ''}`);
  }
  return role;
}
