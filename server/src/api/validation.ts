// Request validation for the REST API. Bodies are checked by the very validator devices use
// (core's compileSchema: one private ajv, no coercion, no defaults, no stripping), so a spec
// the server accepts is a spec the device accepts. Query strings and path params are strings
// on the wire and get their own ajv that coerces them to the declared types and fills defaults.
// Every message names the path and the rule: `body/probe/timeoutSeconds must be <= 300`.
import { Ajv, type ErrorObject } from 'ajv';
import type { FastifySchemaCompiler } from 'fastify';
import { compileSchema, type JsonSchema } from '@meshanics/core/contract';
import { MeshError } from '../errors.js';

const wireAjv = new Ajv({ allErrors: true, strict: true, coerceTypes: 'array', useDefaults: true, removeAdditional: false });

/** Same wording as core's messages (which devices and the CLI print). */
function formatError(root: string, error: ErrorObject): string {
  const where = root + error.instancePath;
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'additionalProperties') return `${where} must NOT have additional property "${String(params.additionalProperty)}"`;
  if (error.keyword === 'required') return `${where}/${String(params.missingProperty)} is required`;
  if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    return `${where} must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${where} ${error.message ?? 'is invalid'}`;
}

// A probe's spec is checked by its type's schema through if/then; when the spec is wrong, ajv
// also reports the if/then frame itself, which says nothing the specific errors do not.
const FRAME_NOISE = / must match "(then|else)" schema$/;

export function validationError(errors: string[]): MeshError {
  const useful = errors.filter((e) => !FRAME_NOISE.test(e));
  return new MeshError('MESH_ERR_API_INVALID', (useful.length > 0 ? useful : errors).join('; '), { details: { errors: useful } });
}

/** Marks a body schema that documents a multipart form (validated by its route, not here). */
export const MULTIPART_BODY = 'x-multipart';

export const validatorCompiler: FastifySchemaCompiler<JsonSchema> = ({ schema, httpPart }) => {
  // Multipart bodies are streamed, never parsed up front: the route checks each field itself.
  if (schema[MULTIPART_BODY] === true) return () => true;
  if (httpPart === 'body') {
    const validate = compileSchema(schema, 'body');
    // A body that may be empty altogether (every property optional) reads as {}.
    const optional = !Array.isArray(schema.required) || (schema.required as unknown[]).length === 0;
    return (data: unknown) => {
      const value = (data === null || data === undefined) && optional ? {} : data;
      const result = validate(value);
      return result.ok ? { value: result.value } : { error: validationError(result.errors) };
    };
  }
  const validate = wireAjv.compile(schema);
  const root = httpPart ?? 'request';
  return (data: unknown) => {
    if (validate(data)) {
      const unsafe = unsafeNumbers(data, root);
      return unsafe.length === 0 ? { value: data } : { error: validationError(unsafe) };
    }
    return { error: validationError((validate.errors ?? []).map((e) => formatError(root, e))) };
  };
};

// ajv's string coercion turns "Infinity" and "1e309" into Infinity, and under its strict
// number mode such a value then passes `maximum`; a number that is not a safe integer never
// means anything in a query or a path, so it is refused here before it reaches SQL or JSON.
function unsafeNumbers(data: unknown, root: string): string[] {
  if (data === null || typeof data !== 'object') return [];
  const found: string[] = [];
  for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v === 'number' && !Number.isSafeInteger(v) && !Number.isFinite(v)) found.push(`${root}/${key} must be a finite number`);
      else if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) found.push(`${root}/${key} must be a safe integer`);
    }
  }
  return found;
}

/** A deep copy without the top-level `$id`, so one plugin schema can sit inside many route schemas. */
export function embeddable(schema: JsonSchema): JsonSchema {
  const { $id: _id, ...rest } = structuredClone(schema) as JsonSchema & { $id?: unknown };
  return rest;
}
