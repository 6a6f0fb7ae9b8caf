// The kinds and probe types this server accepts, each with the JSON Schema its device-side
// plugin validates against. Imported from the plugins' side-effect-free `/schema` subpaths so
// the server and the device judge a spec by the very same schema. To support a new plugin,
// add one line to a table.
import { compileSchema, type JsonSchema, type SchemaValidator } from '@meshanics/core/contract';
import { ARTIFACT_KIND as AGENT_KIND, AGENT_SPEC_SCHEMA } from '@meshanics/artifact-agent/schema';
import { ARTIFACT_KIND as CONFIG_KIND, CONFIG_SPEC_SCHEMA } from '@meshanics/artifact-config/schema';
import { ARTIFACT_KIND as CONTAINER_KIND, CONTAINER_SPEC_SCHEMA } from '@meshanics/artifact-container/schema';
import { ARTIFACT_KIND as MODEL_KIND, MODEL_SPEC_SCHEMA } from '@meshanics/artifact-model/schema';
import { PROBE_TYPE as EXEC_PROBE_TYPE, EXEC_PROBE_SPEC_SCHEMA } from '@meshanics/probe-exec/schema';
import { PROBE_TYPE as FILE_PROBE_TYPE, FILE_PROBE_SPEC_SCHEMA } from '@meshanics/probe-file/schema';
import { PROBE_TYPE as HTTP_PROBE_TYPE, HTTP_PROBE_SPEC_SCHEMA } from '@meshanics/probe-http/schema';

const BUILT_IN_ARTIFACT_SCHEMAS: Readonly<Record<string, JsonSchema>> = {
  [MODEL_KIND]: MODEL_SPEC_SCHEMA,
  [CONFIG_KIND]: CONFIG_SPEC_SCHEMA,
  [CONTAINER_KIND]: CONTAINER_SPEC_SCHEMA,
  [AGENT_KIND]: AGENT_SPEC_SCHEMA,
};

const BUILT_IN_PROBE_SCHEMAS: Readonly<Record<string, JsonSchema>> = {
  [FILE_PROBE_TYPE]: FILE_PROBE_SPEC_SCHEMA,
  [EXEC_PROBE_TYPE]: EXEC_PROBE_SPEC_SCHEMA,
  [HTTP_PROBE_TYPE]: HTTP_PROBE_SPEC_SCHEMA,
};

// Built-ins plus the custom kinds an operator added to this data dir (plugin-schemas/*.json,
// see custom-plugin-schemas.ts). One process serves one data dir, so a module-level table is
// the data dir's table.
let ARTIFACT_SPEC_SCHEMAS: Record<string, JsonSchema> = { ...BUILT_IN_ARTIFACT_SCHEMAS };
let PROBE_SPEC_SCHEMAS: Record<string, JsonSchema> = { ...BUILT_IN_PROBE_SCHEMAS };

// Set by custom-plugin-schemas.ts: re-reads the data dir's custom schemas when they changed, so
// a running `serve` (every replica on the shared data dir) sees `plugin-schema add` at once.
let refreshCustom: (() => void) | undefined;

export function setCustomSchemaRefresher(refresh: (() => void) | undefined): void {
  refreshCustom = refresh;
}

function fresh(): void {
  refreshCustom?.();
}

/** Replaces every custom kind with `custom` (validated first: a broken schema replaces nothing). */
export function replaceCustomSchemas(custom: ReadonlyArray<{ what: 'artifact' | 'probe'; kind: string; schema: JsonSchema }>): void {
  const artifacts: Record<string, JsonSchema> = { ...BUILT_IN_ARTIFACT_SCHEMAS };
  const probes: Record<string, JsonSchema> = { ...BUILT_IN_PROBE_SCHEMAS };
  for (const { what, kind, schema } of custom) {
    if (isBuiltInKind(kind, what)) throw new Error(`"${kind}" is a built-in ${what} kind`);
    compileSchema(schema, what === 'artifact' ? 'spec' : 'probe/spec');
    (what === 'artifact' ? artifacts : probes)[kind] = schema;
  }
  ARTIFACT_SPEC_SCHEMAS = artifacts;
  PROBE_SPEC_SCHEMAS = probes;
}

export function isBuiltInKind(kind: string, what: 'artifact' | 'probe'): boolean {
  return Object.hasOwn(what === 'artifact' ? BUILT_IN_ARTIFACT_SCHEMAS : BUILT_IN_PROBE_SCHEMAS, kind);
}

/** Adds a custom kind's schema (never replaces a built-in one). */
export function registerSpecSchema(what: 'artifact' | 'probe', kind: string, schema: JsonSchema): void {
  if (isBuiltInKind(kind, what)) throw new Error(`"${kind}" is a built-in ${what} kind`);
  // Compile now, so a broken schema is refused when it is added, not when it is first used.
  compileSchema(schema, what === 'artifact' ? 'spec' : 'probe/spec');
  (what === 'artifact' ? ARTIFACT_SPEC_SCHEMAS : PROBE_SPEC_SCHEMAS)[kind] = schema;
}

export function knownArtifactKinds(): string[] {
  fresh();
  return Object.keys(ARTIFACT_SPEC_SCHEMAS).sort();
}

export function knownProbeTypes(): string[] {
  fresh();
  return Object.keys(PROBE_SPEC_SCHEMAS).sort();
}

/** Validator for a kind's spec (messages rooted at `spec`), or undefined for an unknown kind. */
export function artifactSpecValidator(kind: string): SchemaValidator<Record<string, unknown>> | undefined {
  fresh();
  const schema = Object.hasOwn(ARTIFACT_SPEC_SCHEMAS, kind) ? ARTIFACT_SPEC_SCHEMAS[kind] : undefined;
  return schema ? compileSchema<Record<string, unknown>>(schema, 'spec') : undefined;
}

/** Validator for a probe type's spec (messages rooted at `probe/spec`), or undefined for an unknown type. */
export function probeSpecValidator(type: string): SchemaValidator<Record<string, unknown>> | undefined {
  fresh();
  const schema = Object.hasOwn(PROBE_SPEC_SCHEMAS, type) ? PROBE_SPEC_SCHEMAS[type] : undefined;
  return schema ? compileSchema<Record<string, unknown>>(schema, 'probe/spec') : undefined;
}

/** A kind's spec schema as registered (the REST API embeds it in its route schemas), or undefined. */
export function artifactSpecSchema(kind: string): JsonSchema | undefined {
  fresh();
  return Object.hasOwn(ARTIFACT_SPEC_SCHEMAS, kind) ? ARTIFACT_SPEC_SCHEMAS[kind] : undefined;
}

/** A probe type's spec schema as registered, or undefined. */
export function probeSpecSchema(type: string): JsonSchema | undefined {
  fresh();
  return Object.hasOwn(PROBE_SPEC_SCHEMAS, type) ? PROBE_SPEC_SCHEMAS[type] : undefined;
}
