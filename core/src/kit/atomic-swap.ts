// The atomic file swap shared by every file-based artifact plugin (model, config).
//
// Mender's rule: nothing reaches the final location before it is verified, the old version
// is backed up before apply, and the live path changes in exactly one rename. The swap
// record tells rollback what really happened, so a rollback after a crash at any point
// restores the right bytes: never a stale backup from an older update.
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { MeshError } from '../errors.js';
import { chmodAndSync, exists, fsyncDir, tempSibling } from './atomic-file.js';

export interface SwapRecord {
  destination: string;
  backupPath: string;
  /** Whether a live file existed (and was backed up) before the swap. */
  hadPrevious: boolean;
}

export interface SwapInOptions {
  /** The verified bytes, anywhere on the device (renamed if on the same file system, else copied). */
  source: string;
  destination: string;
  /** Where the live file is preserved; a hard link, so taking it costs no copy. */
  backupPath: string;
  mode: number;
  /** Persist the record before the live path changes; rollback after a crash relies on it. */
  checkpoint: (record: SwapRecord) => Promise<void>;
}

async function stageBeside(source: string, destination: string, mode: number): Promise<string> {
  const temp = tempSibling(destination, 'incoming');
  try {
    await fs.rename(source, temp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    // Another file system: copy into the destination directory so the final step is still a rename.
    await fs.copyFile(source, temp, constants.COPYFILE_EXCL);
  }
  await chmodAndSync(temp, mode);
  return temp;
}

/** Puts `source` at `destination` in one rename, keeping the previous file at `backupPath`. */
export async function swapIn(options: SwapInOptions): Promise<SwapRecord> {
  const { source, destination, backupPath, mode, checkpoint } = options;
  const dir = path.dirname(destination);
  if (path.dirname(backupPath) !== dir) {
    throw new MeshError('MESH_ERR_SWAP_FAILED', `backup ${backupPath} must be in the destination's directory ${dir}`);
  }
  await fs.mkdir(dir, { recursive: true });
  const incoming = await stageBeside(source, destination, mode);
  try {
    await fs.rm(backupPath, { force: true });
    let hadPrevious = false;
    try {
      const stat = await fs.lstat(destination);
      if (!stat.isFile()) {
        throw new MeshError('MESH_ERR_SWAP_FAILED', `${destination} exists and is not a regular file`);
      }
      await fs.link(destination, backupPath);
      hadPrevious = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await fsyncDir(dir);
    const record: SwapRecord = { destination, backupPath, hadPrevious };
    await checkpoint(record);
    await fs.rename(incoming, destination);
    await fsyncDir(dir);
    return record;
  } catch (err) {
    await fs.rm(incoming, { force: true });
    throw err;
  }
}

/**
 * Undoes swapIn. Idempotent: running it twice (a crash during rollback) ends in the same
 * place. Without a record nothing was swapped, so nothing is touched.
 */
export async function swapBack(record: SwapRecord | undefined): Promise<void> {
  if (!record) return;
  const dir = path.dirname(record.destination);
  if (record.hadPrevious) {
    // A missing backup means an earlier rollback already renamed it back.
    if (await exists(record.backupPath)) {
      await fs.rename(record.backupPath, record.destination);
    }
  } else {
    await fs.rm(record.destination, { force: true });
  }
  await fsyncDir(dir);
}

/** Removes temp files a crash left beside `destination`. */
export async function removeSwapLeftovers(destination: string): Promise<void> {
  const dir = path.dirname(destination);
  const prefix = `.${path.basename(destination)}.`;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await Promise.all(names.filter((n) => n.startsWith(prefix) && /\.(incoming|tmp)-[0-9a-f]{12}$/.test(n)).map((n) => fs.rm(path.join(dir, n), { force: true })));
}
