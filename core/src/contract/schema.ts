import { Ajv, type ErrorObject } from 'ajv';

/** A JSON Schema object (draft-07, as ajv's default). */
export type JsonSchema = Record<string, unknown>;

export type Validation<T> = { ok: true; value: T } | { ok: false; errors: string[] };

export interface SchemaValidator<T = unknown> {
  /** Validates a parsed value; errors read `spec/timeoutSeconds must be <= 300`. */
  (value: unknown): Validation<T>;
}

// One private ajv instance: callers get validators, never the instance, so nobody can add
// keywords or formats that would make the server and the device disagree.
// strictTuples off: argv schemas are a fixed first item (an absolute path) plus open arguments.
const ajv = new Ajv({ allErrors: true, strict: true, strictTuples: false, useDefaults: false, coerceTypes: false });
const compiled = new WeakMap<JsonSchema, ReturnType<typeof ajv.compile>>();

function formatError(root: string, error: ErrorObject): string {
  const where = root + error.instancePath;
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'additionalProperties') {
    return `${where} must NOT have additional property "${String(params.additionalProperty)}"`;
  }
  if (error.keyword === 'required') {
    return `${where}/${String(params.missingProperty)} is required`;
  }
  if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    return `${where} must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${where} ${error.message ?? 'is invalid'}`;
}

/** Compiles a schema once; `root` names the value in messages (`spec`, `probe`, `config`). */
export function compileSchema<T = unknown>(schema: JsonSchema, root: string): SchemaValidator<T> {
  let validate = compiled.get(schema);
  if (!validate) {
    // A schema object with an `$id` ajv already knows (the same plugin schema read again from a
    // file, or an upgraded version of it) replaces the old entry instead of failing with "schema
    // with key or id ... already exists" (issue 27). Validators compiled earlier keep working.
    if (typeof schema.$id === 'string') ajv.removeSchema(schema.$id);
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  const fn = validate;
  return (value: unknown) => {
    if (fn(value)) return { ok: true, value: value as T };
    const errors = (fn.errors ?? []).map((e) => formatError(root, e));
    return { ok: false, errors: errors.length > 0 ? errors : [`${root} is invalid`] };
  };
}

/** Parses a JSON text that must hold an object, then validates it. */
export function parseAndValidate<T>(text: string, validator: SchemaValidator<T>, root: string): Validation<T> {
  let parsed: unknown;
  try {
    parsed = text.trim() === '' ? {} : JSON.parse(text);
  } catch (err) {
    return { ok: false, errors: [`${root} is not valid JSON: ${(err as Error).message}`] };
  }
  return validator(parsed);
}

/**
 * A fixed argv whose first item is the absolute path of a binary (the device checks it
 * against its allowlist); shared by every schema that names a program to run.
 */
export const ABSOLUTE_ARGV_SCHEMA: JsonSchema = Object.freeze({
  type: 'array',
  minItems: 1,
  maxItems: 64,
  items: [{ type: 'string', pattern: '^/', maxLength: 4096 }],
  additionalItems: { type: 'string', maxLength: 4096 },
});

/**
 * The probe contract every probe type shares (enforced by the server on assignment and
 * re-checked by the agent before anything is downloaded).
 */
export const PROBE_COMMON_SCHEMA: JsonSchema = Object.freeze({
  type: 'object',
  required: ['type', 'timeoutSeconds', 'attempts', 'initialDelaySeconds'],
  properties: {
    type: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,62}$' },
    timeoutSeconds: { type: 'integer', minimum: 1, maximum: 300 },
    attempts: { type: 'integer', minimum: 1, maximum: 10 },
    initialDelaySeconds: { type: 'integer', minimum: 0, maximum: 3600 },
  },
});

export interface ProbeContract {
  type: string;
  timeoutSeconds: number;
  attempts: number;
  initialDelaySeconds: number;
}
