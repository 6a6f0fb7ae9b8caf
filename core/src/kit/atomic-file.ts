// Durable file primitives. Every piece of state the agent keeps goes through these so a
// power cut leaves either the old bytes or the new bytes, never a torn file: write a temp
// file in the same directory, fsync it, rename it over the target, fsync the directory
// (rename is atomic within one file system; the directory fsync makes the rename durable).
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A sibling temp name: same directory (so rename stays atomic), hidden, unique. */
export function tempSibling(target: string, label = 'tmp'): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.${label}-${randomBytes(6).toString('hex')}`);
}

export async function writeFileAtomic(
  target: string,
  data: string | Uint8Array,
  options: { mode?: number } = {},
): Promise<void> {
  const temp = tempSibling(target);
  const handle = await fs.open(temp, 'wx', options.mode ?? 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(target));
}

export async function writeJsonAtomic(target: string, value: unknown, options: { mode?: number } = {}): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, 2) + '\n', options);
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Points the symlink `link` at `target` in one rename (a new link beside it, renamed over
 * the old one), so readers see the old target or the new one, never no link.
 */
export async function swapSymlink(link: string, target: string): Promise<void> {
  const temp = tempSibling(link);
  await fs.symlink(target, temp);
  try {
    await fs.rename(temp, link);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(link));
}

/** The target of a symlink, or undefined when there is none. */
export async function readSymlink(link: string): Promise<string | undefined> {
  try {
    return await fs.readlink(link);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
