// What is checked before anything is pulled or created: the assignment carries exactly the
// descriptor signed as the TUF target, and its bind mounts stay inside the device allowlist.
import { promises as fs } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { MeshError, assertBindMountPath, compileSchema, type Allowlist, type ArtifactContext } from '@meshanics/core';
import { CONTAINER_SPEC_SCHEMA, type ContainerSpec } from './schema.js';

const descriptorValidator = compileSchema<ContainerSpec>(CONTAINER_SPEC_SCHEMA, 'descriptor');

/** The descriptor bytes are the TUF target; the assignment must carry exactly the same spec. */
export async function assertDescriptorMatches(ctx: ArtifactContext): Promise<void> {
  if (!ctx.stagedFile) throw new MeshError('MESH_ERR_SPEC_INVALID', 'no verified container descriptor to read');
  const text = await fs.readFile(ctx.stagedFile, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new MeshError('MESH_ERR_SPEC_INVALID', `the TUF target is not a JSON container descriptor: ${(err as Error).message}`);
  }
  const result = descriptorValidator(parsed);
  if (!result.ok) throw new MeshError('MESH_ERR_SPEC_INVALID', `the TUF target is not a valid container descriptor: ${result.errors.join('; ')}`);
  if (!isDeepStrictEqual(result.value, ctx.spec)) {
    throw new MeshError('MESH_ERR_SPEC_INVALID', 'the assignment spec differs from the container descriptor signed as the TUF target');
  }
}

/** Bind mount sources: under `allowlist.bindMountPaths`, also once symlinks are resolved. */
export async function assertMountsAllowed(allowlist: Allowlist, spec: ContainerSpec): Promise<void> {
  const mounts = spec.mounts ?? [];
  if (mounts.length === 0) return;
  for (const mount of mounts) assertBindMountPath(allowlist, mount.source);
  const realPrefixes = await Promise.all(allowlist.bindMountPaths.map(async (p) => fs.realpath(p).catch(() => p)));
  for (const mount of mounts) {
    let real: string;
    try {
      real = await fs.realpath(mount.source);
    } catch (err) {
      throw new MeshError('MESH_ERR_SPEC_INVALID', `bind mount source "${mount.source}" does not exist on the device (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (real !== mount.source) {
      try {
        assertBindMountPath({ ...allowlist, bindMountPaths: realPrefixes }, real);
      } catch {
        throw new MeshError(
          'MESH_ERR_ALLOWLIST_DENIED',
          `bind mount "${mount.source}" escapes the allowlisted paths through a symlink (it resolves to ${real}) (allowlist.bindMountPaths)`,
        );
      }
    }
  }
}
