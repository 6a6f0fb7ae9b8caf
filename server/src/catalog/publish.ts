// catalog/ owns what devices may be given: publishing an artifact version (this file), the schemas of the kinds and
// probe types the server accepts (plugin-schemas.ts, from the plugins' side-effect-free `/schema` subpaths;
// custom-plugin-schemas.ts, vendor schemas kept as JSON) and the artifact HTTPS server (artifact-server.ts).
// May import: store/ (types), config/, pki/ (peer identity), observability/, ../errors.ts, @meshanics/core/contract and
// the plugins' `/schema` subpaths, never a plugin's main entry (no device code runs in the server). TUF is reached
// through the data dir's context, not by importing tuf/.
//
// Publishing an artifact version: validate, stage the bytes, sign them into TUF, and only
// then record them in the catalog. A device only ever acts on what TUF signed, so the catalog
// must never list something TUF does not.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ARTIFACT_NAME, ARTIFACT_VERSION, artifactTargetPath, hashPrefixedTargetPath } from '@meshanics/core/contract';
import { ensureDirDurableSync, renameDurableSync, tempSibling, writeFileAtomicSync } from '@meshanics/core/kit';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import { AGENT_KIND, assertAgentPackageVersion } from './agent-package.js';
import { artifactSpecValidator, knownArtifactKinds } from './plugin-schemas.js';
import { checkSignedJson, MANIFEST_BOUNDS, SPEC_BOUNDS } from './signed-bounds.js';
import { assertPublishable, checkArtifactFleet, EVERY_FLEET } from './tenancy.js';
import type { ArtifactRecord, NewArtifactRecord } from '../store/index.js';
import { canonicalJsonBytes } from '../tuf/metadata-files.js';

export interface PublishArtifactInput {
  /** Path of the file to publish; it is copied, never moved or modified. */
  file: string;
  name: string;
  version: string;
  kind: string;
  /** The kind-specific spec, as an object or JSON text; validated by the kind's plugin schema. */
  spec?: Record<string, unknown> | string;
  /** Who publishes, for the audit trail. */
  actor?: string;
  /** The name the catalog records for the file (default: the basename of `file`). */
  fileName?: string;
  /**
   * Optional free-form manifest, kept in the catalog. Only its sha256 and length are signed
   * (custom.meshanics.manifest); its canonical JSON bytes are served beside the target as
   * NAME/VERSION/SHA256.FILE.manifest.json, so metadata stays small (issue 23).
   */
  manifest?: Record<string, unknown>;
  /** The fleet the artifact belongs to, or `*` (the default) for every fleet (catalog/tenancy.ts); signed as custom.meshanics.fleet. */
  fleet?: string;
}

export interface PublishedArtifact {
  name: string;
  version: string;
  kind: string;
  targetPath: string;
  sha256: string;
  length: number;
  fleet: string;
}

function validateInput(input: PublishArtifactInput): Record<string, unknown> {
  if (!ARTIFACT_NAME.test(input.name)) {
    throw new MeshError('MESH_ERR_ARTIFACT_INVALID_NAME', `invalid artifact name "${input.name}": must match ${ARTIFACT_NAME.source}`);
  }
  if (!ARTIFACT_VERSION.test(input.version)) {
    throw new MeshError('MESH_ERR_ARTIFACT_INVALID_VERSION', `invalid artifact version "${input.version}": must match ${ARTIFACT_VERSION.source}`);
  }
  const validator = artifactSpecValidator(input.kind);
  if (!validator) {
    throw new MeshError('MESH_ERR_ARTIFACT_UNKNOWN_KIND', `unknown artifact kind "${input.kind}" (known: ${knownArtifactKinds().join(', ')})`);
  }
  // Bounds first (signed-bounds.ts): the schema validator must never walk a hostile value.
  let spec: unknown = input.spec ?? {};
  if (typeof input.spec === 'string') {
    try {
      spec = input.spec.trim() === '' ? {} : JSON.parse(input.spec);
    } catch (err) {
      throw new MeshError('MESH_ERR_ARTIFACT_INVALID_SPEC', `invalid ${input.kind} spec: spec is not valid JSON: ${(err as Error).message}`);
    }
  }
  checkSignedJson(spec, 'spec', SPEC_BOUNDS);
  if (input.manifest !== undefined) checkSignedJson(input.manifest, 'manifest', MANIFEST_BOUNDS);
  const result = validator(spec);
  if (!result.ok) {
    throw new MeshError('MESH_ERR_ARTIFACT_INVALID_SPEC', `invalid ${input.kind} spec: ${result.errors.join('; ')}`, {
      details: { errors: result.errors },
    });
  }
  return result.value;
}

/** Copies `file` into the staging dir while hashing it; the bytes are never all in memory. */
async function stageFile(file: string, stagingDir: string): Promise<{ staged: string; sha256: string; length: number }> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(file);
  } catch (err) {
    throw new MeshError('MESH_ERR_ARTIFACT_FILE_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!stat.isFile()) throw new MeshError('MESH_ERR_ARTIFACT_FILE_UNREADABLE', `${file} is not a regular file`);
  const staged = tempSibling(path.join(stagingDir, 'upload'));
  const hash = crypto.createHash('sha256');
  let length = 0;
  try {
    await pipeline(
      fs.createReadStream(file),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          hash.update(chunk);
          length += chunk.length;
          yield chunk;
        }
      },
      fs.createWriteStream(staged, { flags: 'wx', mode: 0o644 }),
    );
    // fsync is per file, not per descriptor: this makes the staged bytes durable before the rename.
    const handle = await fs.promises.open(staged, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await fs.promises.rm(staged, { force: true });
    throw new MeshError('MESH_ERR_ARTIFACT_FILE_UNREADABLE', `cannot copy ${file}: ${(err as Error).message}`, { cause: err });
  }
  return { staged, sha256: hash.digest('hex'), length };
}

/** The manifest's canonical JSON bytes (valid JSON: control characters escaped), their hash, and the hash-prefixed name they are served under. */
function manifestFile(targetPath: string, manifest: Record<string, unknown>): { bytes: Buffer; sha256: string; servedAs: string } {
  const bytes = canonicalJsonBytes(manifest);
  const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
  return { bytes, sha256, servedAs: hashPrefixedTargetPath(`${targetPath}.manifest.json`, sha256) };
}

/**
 * The files publishing left under the targets dir for `record`: the artifact bytes and, with a
 * manifest, its served bytes. Withdrawing an artifact (TufRepository.removeTarget) removes the
 * signed target; these are what is left to delete.
 */
export function publishedFiles(targetsDir: string, record: Pick<ArtifactRecord, 'targetPath' | 'sha256' | 'manifest'>): string[] {
  const files = [path.join(targetsDir, hashPrefixedTargetPath(record.targetPath, record.sha256))];
  if (record.manifest !== null && record.manifest !== undefined) files.push(path.join(targetsDir, manifestFile(record.targetPath, record.manifest).servedAs));
  return files;
}

function conflict(name: string, version: string): MeshError {
  return new MeshError('MESH_ERR_ARTIFACT_CONFLICT', `artifact ${name}@${version} is already published; publish a new version`);
}

export async function publishArtifact(ctx: MeshanicsContext, input: PublishArtifactInput): Promise<PublishedArtifact> {
  const spec = validateInput(input);
  if (input.kind === AGENT_KIND) await assertAgentPackageVersion(input.file, input.version);
  const fleet = checkArtifactFleet(input.fleet ?? EVERY_FLEET);
  const { store, tuf, layout } = ctx;
  // Cheap early answer; the authoritative check is repeated under the lock below.
  await assertPublishable(store, input.name, input.version, fleet);

  // The target's file segment is the artifact name: already validated as path-safe, and
  // independent of whatever the uploaded file happened to be called (kept in the catalog).
  const targetPath = artifactTargetPath(input.name, input.version, input.name);
  const { staged, sha256, length } = await stageFile(input.file, layout.tufStagingDir);
  try {
    return await store.withWriteLock(async () => {
      await assertPublishable(store, input.name, input.version, fleet);
      if (tuf.hasTarget(targetPath)) {
        throw conflict(input.name, input.version);
      }
      // Consistent snapshot: the target is stored under its hash-prefixed name (TUF spec 5.7.3).
      const finalPath = path.join(layout.tufTargetsDir, hashPrefixedTargetPath(targetPath, sha256));
      ensureDirDurableSync(path.dirname(finalPath));
      renameDurableSync(staged, finalPath);
      const manifest = input.manifest !== undefined ? manifestFile(targetPath, input.manifest) : undefined;
      let manifestPath: string | undefined;
      let versions;
      try {
        if (manifest) {
          manifestPath = path.join(layout.tufTargetsDir, manifest.servedAs);
          // Served to devices beside the target: public like the rest of the repository.
          writeFileAtomicSync(manifestPath, manifest.bytes, { mode: 0o644 });
        }
        const custom = { kind: input.kind, spec, ...(manifest ? { manifest: { sha256: manifest.sha256, length: manifest.bytes.length } } : {}) };
        versions = await tuf.addTarget({ path: targetPath, sha256, length, custom: { meshanics: custom }, fleet });
      } catch (err) {
        fs.rmSync(finalPath, { force: true });
        if (manifestPath) fs.rmSync(manifestPath, { force: true });
        throw err;
      }
      const now = new Date().toISOString();
      const record: NewArtifactRecord = {
        id: crypto.randomUUID(),
        name: input.name,
        version: input.version,
        kind: input.kind,
        fileName: input.fileName ?? path.basename(input.file),
        targetPath,
        sha256,
        length,
        spec,
        manifest: input.manifest ?? null,
        createdAt: now,
        fleet,
      };
      await store.insertArtifact(record);
      await store.appendAudit({
        at: now,
        actor: input.actor ?? 'operator',
        action: 'artifact.published',
        subject: `artifact:${input.name}@${input.version}`,
        details: { kind: input.kind, fleet, targetPath, sha256, length, targetsVersion: versions.targets },
      });
      ctx.logger.info({ artifact: input.name, version: input.version, fleet, targetPath, sha256, length, tuf: versions }, 'artifact published');
      return { name: input.name, version: input.version, kind: input.kind, targetPath, sha256, length, fleet };
    });
  } finally {
    await fs.promises.rm(staged, { force: true });
  }
}
