// Custom artifact kinds and probe types (vendor plugins). The operator gives the server the
// plugin's side-effect-free schema module; the server keeps only the JSON Schema, in
// <data-dir>/plugin-schemas/<artifact|probe>-<kind>.json, so no vendor code ever runs in the
// server and every process on the data dir (serve, every replica, CLI commands) validates the
// same way. A running process re-reads the folder when it changed (watchCustomSchemas), so
// `plugin-schema add` needs no restart.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { pathToFileURL } from 'node:url';
import { compileSchema, type JsonSchema } from '@meshanics/core/contract';
import { PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';
import type { Store } from '../store/index.js';
import { replaceCustomSchemas, setCustomSchemaRefresher } from './plugin-schemas.js';

const KIND = /^[a-z][a-z0-9-]{0,62}$/;

export interface CustomSchemaFile {
  what: 'artifact' | 'probe';
  kind: string;
  schema: JsonSchema;
  source: string;
  addedAt: string;
}

function dirOf(dataDir: string): string {
  return path.join(dataDir, 'plugin-schemas');
}

function readCustomSchemas(dataDir: string): CustomSchemaFile[] {
  const dir = dirOf(dataDir);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
    .sort()
    .map((name) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as CustomSchemaFile);
}

/** Loads every custom schema of the data dir into the validators' table (replacing what was there). */
export function loadCustomSchemas(dataDir: string): CustomSchemaFile[] {
  const loaded = readCustomSchemas(dataDir);
  replaceCustomSchemas(loaded);
  return loaded;
}

// The folder's modification time changes with every rename into it (writeFileAtomic), so one
// stat per lookup tells whether another process added or upgraded a kind. On a network file
// system the client's attribute cache bounds how soon (docs/operations.md).
function signatureOf(dataDir: string): string {
  const stat = fs.statSync(dirOf(dataDir), { bigint: true, throwIfNoEntry: false });
  return stat ? `${stat.ino}:${stat.mtimeNs}:${stat.ctimeNs}` : 'none';
}

/**
 * Keeps this process's table in step with the data dir: every lookup first checks the folder
 * and reloads it when it changed. A folder that fails to load keeps the previous table (and
 * `onError` hears why); the next change is tried again.
 */
export function watchCustomSchemas(dataDir: string, onError: (err: Error) => void = () => undefined): () => void {
  let seen = signatureOf(dataDir);
  loadCustomSchemas(dataDir);
  setCustomSchemaRefresher(() => {
    const now = signatureOf(dataDir);
    if (now === seen) return;
    seen = now;
    try {
      loadCustomSchemas(dataDir);
    } catch (err) {
      onError(err as Error);
    }
  });
  return () => setCustomSchemaRefresher(undefined);
}

async function readSchemaModule(modulePath: string): Promise<Omit<CustomSchemaFile, 'addedAt'>> {
  const resolved = path.resolve(modulePath);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  } catch (err) {
    throw new MeshError('MESH_ERR_PLUGIN_SCHEMA_INVALID', `cannot load schema module ${resolved}: ${(err as Error).message}`);
  }
  const artifactKind = typeof mod.ARTIFACT_KIND === 'string' ? mod.ARTIFACT_KIND : undefined;
  const probeType = typeof mod.PROBE_TYPE === 'string' ? mod.PROBE_TYPE : undefined;
  if (!artifactKind === !probeType) {
    throw new MeshError('MESH_ERR_PLUGIN_SCHEMA_INVALID', `${resolved} must export exactly one of ARTIFACT_KIND or PROBE_TYPE`);
  }
  const schemas = Object.entries(mod).filter(([k, v]) => k.endsWith('SPEC_SCHEMA') && v && typeof v === 'object');
  if (schemas.length !== 1) {
    throw new MeshError('MESH_ERR_PLUGIN_SCHEMA_INVALID', `${resolved} must export exactly one *SPEC_SCHEMA object (found ${schemas.length})`);
  }
  const kind = (artifactKind ?? probeType)!;
  if (!KIND.test(kind)) throw new MeshError('MESH_ERR_PLUGIN_SCHEMA_INVALID', `kind "${kind}" must match ${KIND}`);
  const what = artifactKind ? 'artifact' : 'probe';
  return { what, kind, schema: JSON.parse(JSON.stringify(schemas[0]![1])) as JsonSchema, source: resolved };
}

/** What `plugin-schema add` did. */
export interface AddedSchema extends CustomSchemaFile {
  change: 'added' | 'upgraded' | 'unchanged';
  /** Published artifacts of the kind, not in flight, whose spec the new schema rejects (a new rollout of them is refused by devices with the new plugin). */
  rejectedSpecs: Array<{ artifact: string; errors: string[] }>;
}

/**
 * The published artifacts of `kind` whose spec `schema` rejects, each with whether it is in
 * flight (an active assignment or an unfinished rollout holds it).
 */
async function specsRejectedBy(store: Store, kind: string, schema: JsonSchema): Promise<Array<{ artifact: string; errors: string[]; inFlight: string[] }>> {
  // Loaded here, not at the top: the data dir opens this module in every CLI command.
  const { ACTIVE_ROLLOUT_STATUSES } = await import('../rollouts/service.js');
  const validate = compileSchema(schema, 'spec');
  const rejected: Array<{ artifact: string; errors: string[]; inFlight: string[] }> = [];
  for (let offset = 0; ; offset += 200) {
    const { rows } = await store.operatorViews.listArtifacts({ kind }, { limit: 200, offset });
    for (const artifact of rows) {
      const result = validate(artifact.spec);
      if (result.ok) continue;
      const holders = await store.artifactHolders(artifact, ACTIVE_ROLLOUT_STATUSES);
      const inFlight = [
        ...holders.rollouts.map((r) => `rollout ${r.id} (${r.status})`),
        ...holders.devices.filter((d) => d.holds === 'assigned').map((d) => `assignment on ${d.fleet}/${d.name}`),
      ];
      rejected.push({ artifact: `${artifact.name}@${artifact.version}`, errors: result.errors, inFlight });
    }
    if (rows.length < 200) return rejected;
  }
}

/**
 * Reads a plugin's schema module (exports ARTIFACT_KIND or PROBE_TYPE, and one export whose
 * name ends in SPEC_SCHEMA) and stores its schema in the data dir. Idempotent: the same schema
 * again changes nothing. A different schema for a kind already added upgrades it, unless it
 * rejects the spec of an artifact still in flight (MESH_ERR_PLUGIN_SCHEMA_IN_USE: finish or
 * abort those first); published artifacts nobody holds are listed in `rejectedSpecs`.
 */
export async function addCustomSchema(dataDir: string, modulePath: string, store?: Store): Promise<AddedSchema> {
  const read = await readSchemaModule(modulePath);
  const { what, kind, schema } = read;
  try {
    compileSchema(schema, what === 'artifact' ? 'spec' : 'probe/spec');
  } catch (err) {
    throw new MeshError('MESH_ERR_PLUGIN_SCHEMA_INVALID', `cannot add ${what} kind "${kind}": ${(err as Error).message}`);
  }
  const update = async (): Promise<AddedSchema> => {
    const existing = readCustomSchemas(dataDir).find((f) => f.what === what && f.kind === kind);
    if (existing && isDeepStrictEqual(existing.schema, schema)) return { ...existing, change: 'unchanged', rejectedSpecs: [] };
    let rejected: Awaited<ReturnType<typeof specsRejectedBy>> = [];
    if (existing && what === 'artifact' && store) {
      rejected = await specsRejectedBy(store, kind, schema);
      const held = rejected.filter((r) => r.inFlight.length > 0);
      if (held.length > 0) {
        throw new MeshError(
          'MESH_ERR_PLUGIN_SCHEMA_IN_USE',
          `the new schema of ${what} kind "${kind}" rejects the spec of artifacts still in flight: ${held
            .map((r) => `${r.artifact} (${r.errors.join('; ')}; held by ${r.inFlight.join(', ')})`)
            .join('; ')}; let those finish or abort them, then add the schema again`,
        );
      }
    }
    const file: CustomSchemaFile = { what, kind, schema, source: read.source, addedAt: new Date().toISOString() };
    const others = readCustomSchemas(dataDir).filter((f) => !(f.what === what && f.kind === kind));
    try {
      replaceCustomSchemas([...others, file]);
    } catch (err) {
      throw new MeshError('MESH_ERR_PLUGIN_SCHEMA_INVALID', `cannot add ${what} kind "${kind}": ${(err as Error).message}`);
    }
    fs.mkdirSync(dirOf(dataDir), { recursive: true, mode: 0o700 });
    writeFileAtomicSync(path.join(dirOf(dataDir), `${what}-${kind}.json`), `${JSON.stringify(file, null, 2)}\n`, { mode: PUBLIC_FILE_MODE });
    return { ...file, change: existing ? 'upgraded' : 'added', rejectedSpecs: rejected.map(({ artifact, errors }) => ({ artifact, errors })) };
  };
  // Under the write lock: no assignment or rollout can take an artifact of the kind between the check and the write.
  return store ? await store.withWriteLock(update) : await update();
}
