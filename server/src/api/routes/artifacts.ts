// Artifacts: publish by multipart upload (streamed to disk, never held in memory), the catalog,
// one version, and withdrawal. Publishing signs into TUF first; publishArtifact writes the
// catalog row and its audit event only once signing succeeded. Each artifact belongs to a fleet
// or to every fleet: what a key may see and change is artifact-access.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance } from 'fastify';
import { ARTIFACT_NAME, ARTIFACT_VERSION, compileSchema, type JsonSchema } from '@meshanics/core/contract';
import { publishArtifact } from '../../catalog/publish.js';
import { assertPublishable, EVERY_FLEET } from '../../catalog/tenancy.js';
import { withdrawArtifact } from '../../catalog/withdraw.js';
import { tempSibling } from '@meshanics/core/kit';
import { checkSignedJson, MANIFEST_BOUNDS, SPEC_BOUNDS } from '../../catalog/signed-bounds.js';
import { MeshError } from '../../errors.js';
import { artifactSpecSchema, knownArtifactKinds } from '../../catalog/plugin-schemas.js';
import type { ArtifactRecord } from '../../store/index.js';
import { publishFleet, visibleArtifact } from '../artifact-access.js';
import { actorOf, callerOf } from '../auth.js';
import { artifactViewSchema, AUTH_ERRORS, errors, objectOf, pageOf, pageQuery, publishedArtifactSchema, str, withdrawnArtifactSchema, type PageQuery } from '../schemas.js';
import { MULTIPART_BODY, validationError } from '../validation.js';
import type { ApiRouteOptions } from './options.js';

/** Default upload limit: 8 GiB. */
export const DEFAULT_MAX_ARTIFACT_BYTES = 8 * 1024 ** 3;
/** A container descriptor is small JSON; anything bigger is not one. */
const MAX_DESCRIPTOR_BYTES = 1024 * 1024;
const MAX_FIELD_BYTES = 1024 * 1024;
const CONTAINER_KIND = 'container';

interface Fields {
  name?: string;
  version?: string;
  kind?: string;
  spec?: unknown;
  manifest?: unknown;
  fleet?: string;
}

interface CheckedFields {
  name: string;
  version: string;
  kind: string;
  spec: Record<string, unknown> | undefined;
  manifest: Record<string, unknown> | undefined;
  fleet: string | undefined;
}

const FIELD_NAMES = new Set(['name', 'version', 'kind', 'spec', 'manifest', 'fleet']);

function artifactView(a: ArtifactRecord) {
  return {
    name: a.name,
    version: a.version,
    kind: a.kind,
    fileName: a.fileName,
    targetPath: a.targetPath,
    sha256: a.sha256,
    length: a.length,
    spec: a.spec,
    manifest: a.manifest ?? null,
    createdAt: a.createdAt,
    fleet: a.fleet,
  };
}

function invalid(message: string): MeshError {
  return validationError([message]);
}

/**
 * The parser's complaint about a body that is not well-formed multipart (no boundary,
 * truncated, a broken part header) as a 400 naming the reason, or undefined for anything
 * else. The parser (busboy) throws plain Errors without a status; everything of ours is a
 * MeshError, Fastify's own refusals carry a status, and system errors (disk full) a syscall.
 */
function malformedMultipart(err: unknown): MeshError | undefined {
  if (!(err instanceof Error) || err instanceof MeshError) return undefined;
  const e = err as Error & { statusCode?: unknown; syscall?: unknown; code?: unknown };
  const fromParser = e.statusCode === undefined && e.syscall === undefined && e.code === undefined;
  if (!fromParser && e.code !== 'FST_PROTO_VIOLATION' && e.code !== 'FST_INVALID_MULTIPART_CONTENT_TYPE') return undefined;
  return new MeshError('MESH_ERR_API_MULTIPART_INVALID', `body is not a well-formed multipart/form-data upload: ${e.message}`, { cause: err });
}

/** A JSON field: text from a form, or already parsed when the part said application/json. */
function jsonField(value: unknown, field: string): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw invalid(`body/${field} is not valid JSON: ${(err as Error).message}`);
  }
}

/** The multipart form's fields, as the OpenAPI document describes them. */
function uploadSchema(): JsonSchema {
  return {
    type: 'object',
    required: ['name', 'version', 'kind', 'file'],
    properties: {
      name: { type: 'string', pattern: ARTIFACT_NAME.source },
      version: { type: 'string', pattern: ARTIFACT_VERSION.source, description: 'immutable once published' },
      kind: { type: 'string', enum: knownArtifactKinds() },
      spec: { type: 'string', description: "JSON: the kind's spec, validated by the kind plugin's own schema (for container: optional, the file is the descriptor)" },
      manifest: { type: 'string', description: 'JSON object, optional: kept in the catalog; its sha256 and length are signed into the TUF target' },
      fleet: {
        type: 'string',
        maxLength: 63,
        description: 'the fleet the artifact belongs to, or * for every fleet; a fleet-bound key publishes only into its own fleet (the default), a * key into any (default *)',
      },
      file: { type: 'string', format: 'binary', description: 'the artifact bytes (for container: the descriptor JSON); send it after the other fields' },
    },
  };
}

export async function artifactRoutes(app: FastifyInstance, options: ApiRouteOptions): Promise<void> {
  const { ctx, maxArtifactBytes } = options;
  // The kind is checked against the live table (not an enum fixed at start): a kind added or
  // upgraded with `plugin-schema add` is accepted by this running server (issue 27).
  const validateFields = compileSchema<{ name: string; version: string; kind: string; spec?: Record<string, unknown>; manifest?: Record<string, unknown>; fleet?: string }>(
    {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'version', 'kind'],
      properties: {
        name: { type: 'string', pattern: ARTIFACT_NAME.source },
        version: { type: 'string', pattern: ARTIFACT_VERSION.source },
        kind: { type: 'string', minLength: 1, maxLength: 63 },
        spec: { type: 'object' },
        manifest: { type: 'object' },
        fleet: { type: 'string', maxLength: 63 },
      },
    },
    'body',
  );

  /** Every field check but the container descriptor's (which needs the file). */
  function checkFields(fields: Fields): CheckedFields {
    const parsed = {
      ...fields,
      ...(fields.spec !== undefined ? { spec: jsonField(fields.spec, 'spec') } : {}),
      ...(fields.manifest !== undefined ? { manifest: jsonField(fields.manifest, 'manifest') } : {}),
    };
    // Signed-metadata bounds (issue 23) before any schema walks the values; publishArtifact repeats them.
    if (parsed.spec !== undefined) checkSignedJson(parsed.spec, 'body/spec', SPEC_BOUNDS);
    if (parsed.manifest !== undefined) checkSignedJson(parsed.manifest, 'body/manifest', MANIFEST_BOUNDS);
    const result = validateFields(parsed);
    if (!result.ok) throw validationError(result.errors);
    const { name, version, kind, spec, manifest, fleet } = result.value;
    const schema = artifactSpecSchema(kind);
    if (!schema)
      throw invalid(
        `body/kind must be one of ${knownArtifactKinds()
          .map((k) => JSON.stringify(k))
          .join(', ')}`,
      );
    if (spec !== undefined) {
      // The kind plugin's own schema, through the same validator devices use.
      const checked = compileSchema(schema, 'body/spec')(spec);
      if (!checked.ok) throw validationError(checked.errors);
    }
    return { name, version, kind, spec, manifest, fleet };
  }

  /** For container, the uploaded file is the descriptor: it is the spec. */
  async function containerDescriptor(file: string, given: Record<string, unknown> | undefined): Promise<Record<string, unknown>> {
    const stat = await fs.promises.stat(file);
    if (stat.size > MAX_DESCRIPTOR_BYTES) throw invalid(`body/file must be a container descriptor (JSON) of at most ${MAX_DESCRIPTOR_BYTES} bytes`);
    const descriptor = jsonField(await fs.promises.readFile(file, 'utf8'), 'file');
    const schema = artifactSpecSchema(CONTAINER_KIND);
    const checked = compileSchema<Record<string, unknown>>(schema!, 'body/file')(descriptor);
    if (!checked.ok) throw validationError(checked.errors);
    if (given !== undefined && !isDeepStrictEqual(given, checked.value)) {
      throw invalid('body/spec must equal the descriptor uploaded as body/file (for kind container the file is the descriptor)');
    }
    return checked.value;
  }

  app.post(
    '/artifacts',
    {
      config: { access: 'artifacts.write' },
      schema: {
        tags: ['artifacts'],
        summary: 'Publish an artifact version: sign it into TUF, then record it in the catalog',
        consumes: ['multipart/form-data'],
        body: { ...uploadSchema(), [MULTIPART_BODY]: true },
        response: { 201: publishedArtifactSchema, ...errors(...AUTH_ERRORS, 409, 413) },
      },
    },
    async (request, reply) => {
      if (!request.isMultipart()) throw invalid('body must be multipart/form-data (fields name, version, kind, spec, manifest; file part "file")');
      const fields: Fields = {};
      let staged: { path: string; fileName: string } | undefined;
      let published: Awaited<ReturnType<typeof publishArtifact>>;
      // Only errors while the body is read can be the body's fault.
      let reading = true;
      try {
        const parts = request.parts({ limits: { fileSize: maxArtifactBytes, files: 1, fields: FIELD_NAMES.size, fieldSize: MAX_FIELD_BYTES, parts: FIELD_NAMES.size + 1 } });
        for await (const part of parts) {
          if (part.type === 'field') {
            const field = part;
            if (!FIELD_NAMES.has(field.fieldname)) throw invalid(`body must NOT have additional property "${field.fieldname}"`);
            if (field.valueTruncated) throw invalid(`body/${field.fieldname} must NOT be longer than ${MAX_FIELD_BYTES} bytes`);
            (fields as Record<string, unknown>)[field.fieldname] = field.value;
            continue;
          }
          const file = part;
          if (file.fieldname !== 'file') {
            file.file.resume();
            throw invalid(`body must NOT have additional property "${file.fieldname}" (the file part is "file")`);
          }
          // Fields sent before the file (as documented) are judged before any byte is stored.
          if (fields.name !== undefined && fields.version !== undefined && fields.kind !== undefined) {
            try {
              const early = checkFields(fields);
              await assertPublishable(ctx.store, early.name, early.version, publishFleet(request, early.fleet));
            } catch (err) {
              file.file.resume();
              throw err;
            }
          }
          const target = tempSibling(path.join(ctx.layout.tufStagingDir, 'api-upload'));
          staged = { path: target, fileName: file.filename || 'upload' };
          await pipeline(file.file, fs.createWriteStream(target, { flags: 'wx', mode: 0o600 }));
          if (file.file.truncated) {
            throw new MeshError('MESH_ERR_API_TOO_LARGE', `body/file is larger than the ${maxArtifactBytes} bytes this server accepts`);
          }
        }
        reading = false;
        if (!staged) throw invalid('body/file is required');
        const checked = checkFields(fields);
        const fleet = publishFleet(request, checked.fleet);
        const spec = checked.kind === CONTAINER_KIND ? await containerDescriptor(staged.path, checked.spec) : checked.spec;
        published = await publishArtifact(ctx, {
          file: staged.path,
          fileName: staged.fileName,
          name: checked.name,
          version: checked.version,
          kind: checked.kind,
          ...(spec !== undefined ? { spec } : {}),
          ...(checked.manifest !== undefined ? { manifest: checked.manifest } : {}),
          fleet,
          actor: actorOf(request),
        });
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code === 'FST_REQ_FILE_TOO_LARGE') {
          throw new MeshError('MESH_ERR_API_TOO_LARGE', `body/file is larger than the ${maxArtifactBytes} bytes this server accepts`);
        }
        throw (reading ? malformedMultipart(err) : undefined) ?? err;
      } finally {
        // Before answering: a client that saw the answer finds nothing left behind.
        if (staged) await fs.promises.rm(staged.path, { force: true });
      }
      return reply.code(201).send(published);
    },
  );

  app.get<{ Querystring: PageQuery & { name?: string; kind?: string; fleet?: string } }>(
    '/artifacts',
    {
      config: { access: 'artifacts.read' },
      schema: {
        tags: ['artifacts'],
        summary: "The artifact catalog (newest version of each name first): a fleet-bound key's fleet's artifacts and every fleet's",
        querystring: {
          type: 'object',
          properties: { name: str, kind: str, fleet: { type: 'string', description: 'only artifacts of this fleet (* : those of every fleet)' }, ...pageQuery },
        },
        response: { 200: pageOf(artifactViewSchema), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request) => {
      const { limit, offset, name, kind, fleet } = request.query;
      const keyFleet = callerOf(request).fleet;
      const { rows, total } = await ctx.store.operatorViews.listArtifacts(
        {
          ...(name !== undefined ? { name } : {}),
          ...(kind !== undefined ? { kind } : {}),
          ...(fleet !== undefined ? { fleet } : {}),
          ...(keyFleet !== EVERY_FLEET ? { visibleTo: keyFleet } : {}),
        },
        { limit, offset },
      );
      return { items: rows.map(artifactView), total, limit, offset };
    },
  );

  app.get<{ Params: { name: string; version: string } }>(
    '/artifacts/:name/:version',
    {
      config: { access: 'artifacts.read' },
      schema: {
        tags: ['artifacts'],
        summary: 'One artifact version: kind, target path, sha256, length, spec, manifest',
        params: objectOf({ name: { type: 'string', maxLength: 128 }, version: { type: 'string', maxLength: 64 } }),
        response: { 200: artifactViewSchema, ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      const { name, version } = request.params;
      return artifactView(await visibleArtifact(ctx, request, name, version));
    },
  );

  app.delete<{ Params: { name: string; version: string } }>(
    '/artifacts/:name/:version',
    {
      config: { access: 'artifacts.write' },
      schema: {
        tags: ['artifacts'],
        summary: 'Withdraw an artifact version: removed from the signed targets (new metadata versions), unless a rollout or a device still holds it (409 naming them); audited',
        params: objectOf({ name: { type: 'string', maxLength: 128 }, version: { type: 'string', maxLength: 64 } }),
        response: { 200: withdrawnArtifactSchema, ...errors(...AUTH_ERRORS, 404, 409) },
      },
    },
    async (request) => {
      const { name, version } = request.params;
      return withdrawArtifact(ctx, { name, version, actor: actorOf(request), callerFleet: callerOf(request).fleet });
    },
  );
}
