// The signed intent of a target: the artifact's kind and spec signed into the target's TUF
// `custom` field as custom.meshanics (the place TUF gives application data, spec 4.5). The
// agent refuses a target without it (core/src/tuf/tuf-target-source.ts,
// MESH_ERR_TUF_INTENT_UNSIGNED), so the server does not sign one either: not by publishing
// (TufRepository.addTarget) nor by importing a targets file signed offline (import-signed.ts).
import { targetPathProblem } from '@meshanics/core/contract';
import { MeshError } from '../errors.js';
import { TufError } from './errors.js';

/** What custom.meshanics must hold; the server may sign more beside it (fleet, manifest). */
export interface SignedIntent {
  kind: string;
  /** The artifact's spec as published (`{}` when it has none): what the agent compares the assignment's spec with. */
  spec: Record<string, unknown>;
  [field: string]: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Why `custom` (a target's custom field) carries no valid signed intent, or undefined when it
 * does. Stricter than the agent's own reading (any defined spec), so everything the server
 * signs is something the agent can hold an assignment to.
 */
export function signedIntentProblem(custom: unknown): string | undefined {
  if (!isObject(custom)) return 'no "custom" object';
  const meshanics = custom.meshanics;
  if (!isObject(meshanics)) return 'no "custom.meshanics" object';
  if (typeof meshanics.kind !== 'string' || meshanics.kind.length === 0)
    return `"custom.meshanics.kind" is ${JSON.stringify(meshanics.kind) ?? 'undefined'}, not a non-empty string`;
  if (!isObject(meshanics.spec)) return `"custom.meshanics.spec" is ${meshanics.spec === undefined ? 'undefined' : JSON.stringify(meshanics.spec)}, not an object`;
  return undefined;
}

/** Refuses a target to be published without a signed intent (a caller bypassing the types). */
export function requireSignedIntent(targetPath: string, custom: unknown): void {
  const problem = signedIntentProblem(custom);
  if (problem)
    throw new MeshError(
      'MESH_ERR_ARTIFACT_INTENT_UNSIGNED',
      `target ${targetPath} carries no signed intent: ${problem}; agents refuse such a target (MESH_ERR_TUF_INTENT_UNSIGNED)`,
    );
}

/** Refuses an imported targets version listing a path agents would refuse to fetch (`targetPathProblem`), naming each. */
export function requireSafeImportedPaths(version: number, targets: Record<string, unknown>): void {
  const bad = Object.keys(targets)
    .map((p) => [p, targetPathProblem(p)] as const)
    .filter((e): e is readonly [string, string] => e[1] !== undefined);
  if (bad.length === 0) return;
  throw new TufError(
    'MESH_ERR_TUF_IMPORT_INVALID',
    `targets v${version} lists ${bad.length} target path(s) agents refuse: ${bad.map(([p, why]) => `${JSON.stringify(p)} ${why}`).join('; ')}`,
    {
      details: { paths: bad.map(([p]) => p) },
    },
  );
}

/**
 * Refuses an imported targets version listing targets directly (not through the publisher
 * delegation) without a valid signed intent, naming every such path.
 */
export function requireImportedIntents(version: number, targets: Record<string, { unrecognizedFields: Record<string, unknown> }>): void {
  const bad = Object.entries(targets)
    .map(([p, t]) => [p, signedIntentProblem(t.unrecognizedFields.custom)] as const)
    .filter((e): e is readonly [string, string] => e[1] !== undefined);
  if (bad.length === 0) return;
  throw new TufError(
    'MESH_ERR_TUF_IMPORT_INTENT_UNSIGNED',
    `targets v${version} lists ${bad.length} target(s) without a signed kind and spec (custom.meshanics {kind, spec}), which agents refuse: ${bad.map(([p, why]) => `${p} (${why})`).join('; ')}`,
    { details: { paths: bad.map(([p]) => p) } },
  );
}
