// Custom artifact kinds and probe types (vendor plugins). The operator gives the server the
// plugin's side-effect-free schema module once; the server keeps only the JSON Schema, in
// <data-dir>/plugin-schemas/<artifact|probe>-<kind>.json, so no vendor code ever runs in the
// server and every process on the data dir (serve, CLI commands) validates the same way.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { JsonSchema } from '@meshanics/core/contract';
import { PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';
import { registerSpecSchema } from './plugin-schemas.js';

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

/** Loads every custom schema of the data dir into the validators' table. */
export function loadCustomSchemas(dataDir: string): CustomSchemaFile[] {
  const dir = dirOf(dataDir);
  if (!fs.existsSync(dir)) return [];
  const loaded: CustomSchemaFile[] = [];
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    const file = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as CustomSchemaFile;
    registerSpecSchema(file.what, file.kind, file.schema);
    loaded.push(file);
  }
  return loaded;
}

/**
 * Reads a plugin's schema module (exports ARTIFACT_KIND or PROBE_TYPE, and one export whose
 * name ends in SPEC_SCHEMA) and stores its schema in the data dir.
 */
export async function addCustomSchema(dataDir: string, modulePath: string): Promise<CustomSchemaFile> {
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
  const schema = JSON.parse(JSON.stringify(schemas[0]![1])) as JsonSchema;
  try {
    registerSpecSchema(what, kind, schema);
  } catch (err) {
    throw new MeshError('MESH_ERR_PLUGIN_SCHEMA_INVALID', `cannot add ${what} kind "${kind}": ${(err as Error).message}`);
  }
  const file: CustomSchemaFile = { what, kind, schema, source: resolved, addedAt: new Date().toISOString() };
  fs.mkdirSync(dirOf(dataDir), { recursive: true, mode: 0o700 });
  writeFileAtomicSync(path.join(dirOf(dataDir), `${what}-${kind}.json`), `${JSON.stringify(file, null, 2)}\n`, { mode: PUBLIC_FILE_MODE });
  return file;
}
