// The versions root: `<root>/versions/<version>/`, `<root>/current` and `<root>/previous`
// (symlinks, switched with one rename each: core's kit). At most two versions are kept: the
// one that runs and the one to go back to.
import { constants, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { exists, fsyncDir, readSymlink, tempSibling, versionDirOf } from '@meshanics/core';

/** The package's root on a device (scripts/packaging/layout.mjs). */
export const PACKAGE_ROOT = '/usr/lib/meshanics-agent';

/** The running agent's version: its core package.json (the package build writes the version there). */
const corePackageJson = (): string => createRequire(import.meta.url).resolve('@meshanics/core/package.json');

export function runningAgentVersion(): string {
  const file = corePackageJson();
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/**
 * Where the running agent's versions live: the root it runs from when it was installed from
 * the package (`<root>/versions/<v>/node_modules/@meshanics/core`: /usr/lib/meshanics-agent
 * on a device, anywhere for a tarball unpacked elsewhere), else `<dataDir>/agent-versions`.
 */
export function versionsRootOf(dataDir: string): string {
  const coreDir = path.dirname(corePackageJson());
  const versionDir = path.resolve(coreDir, '..', '..', '..');
  if (path.basename(path.dirname(versionDir)) === 'versions') return path.dirname(path.dirname(versionDir));
  return path.join(dataDir, 'agent-versions');
}

/** Moves the verified, unpacked version directory into `<root>/versions/<version>` (rename; copy across file systems). */
export async function installVersionDir(unpacked: string, root: string, version: string): Promise<void> {
  const dest = versionDirOf(root, version);
  await fs.mkdir(path.dirname(dest), { recursive: true, mode: 0o755 });
  const temp = tempSibling(dest, 'incoming');
  try {
    await fs.rename(unpacked, temp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await fs.cp(unpacked, temp, { recursive: true, verbatimSymlinks: true, mode: constants.COPYFILE_EXCL });
  }
  await fs.rename(temp, dest);
  await fsyncDir(path.dirname(dest));
}

/** Removes every version but the ones named (the running one and the one to go back to). */
export async function pruneVersions(root: string, keep: readonly string[]): Promise<string[]> {
  const dir = path.join(root, 'versions');
  const removed: string[] = [];
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (keep.includes(name)) continue;
    await fs.rm(path.join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  // A `previous` link to a removed version would be a rollback target that is not there.
  const previous = await readSymlink(path.join(root, 'previous'));
  if (previous && !(await exists(path.join(root, previous)))) await fs.rm(path.join(root, 'previous'), { force: true });
  return removed;
}
