// A/B slots behind one symlink: the pattern of Mender, RAUC and SWUpdate (two slots, write the
// inactive one, switch which one is live in one atomic step, switch back on rollback).
//
//   <dir>/current -> slot-a        the live slot (what the device boots or serves)
//   <dir>/slot-a, <dir>/slot-b     the two slots; an update only ever writes the inactive one
//   <dir>/current.previous -> ...  backup of the link before the last flip (for a human, a bootloader)
//
// The live slot is never written, so a crash at any point leaves a bootable device: before
// the flip the old slot is live and untouched; the flip is one rename; the flip record is
// checkpointed before it, so rollback (also after a restart) knows where the link pointed.
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { MeshError } from '../errors.js';
import { chmodAndSync, fsyncDir, readSymlink, swapSymlink, tempSibling } from './atomic-file.js';
import { removeSwapLeftovers } from './atomic-swap.js';

export interface SlotFlipRecord {
  link: string;
  /** Where the link pointed before the flip (as stored in the link), or null when there was no link. */
  previous: string | null;
  /** The slot the link points at after the flip (relative to the link's directory). */
  next: string;
}

export interface FlipToInactiveSlotOptions {
  /** The live symlink, e.g. `<dir>/current`. Both slots are in the same directory. */
  link: string;
  /** The two slot names in the link's directory, e.g. ['slot-a', 'slot-b']. */
  slots: readonly [string, string];
  /** The verified image (core's `ctx.stagedFile`); copied, never moved. */
  source: string;
  /** Mode of the written slot file (default 0o644). */
  mode?: number;
  /** Persist the record before the link moves; rollback after a crash relies on it. */
  checkpoint: (record: SlotFlipRecord) => Promise<void>;
}

/** The slot the link does not point at: the one an update may write. A link to neither slot names the first. */
export async function inactiveSlot(link: string, slots: readonly [string, string]): Promise<string> {
  const current = await readSymlink(link);
  return current !== undefined && path.basename(current) === slots[0] ? slots[1] : slots[0];
}

/** Copies `source` into `target` through a temp file, fsync and one rename. */
async function writeSlot(source: string, target: string, mode: number): Promise<void> {
  const temp = tempSibling(target);
  try {
    await fs.copyFile(source, temp, constants.COPYFILE_EXCL);
    await chmodAndSync(temp, mode);
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(target));
}

/**
 * Writes `source` into the inactive slot, checkpoints the flip, keeps the old link as
 * `<link>.previous`, then points `link` at the written slot in one rename.
 */
export async function flipToInactiveSlot(options: FlipToInactiveSlotOptions): Promise<SlotFlipRecord> {
  const { link, slots, source, checkpoint } = options;
  if (slots.some((s) => s.includes('/') || s === '.' || s === '..') || slots[0] === slots[1]) {
    throw new MeshError('MESH_ERR_SWAP_FAILED', `slots must be two different names in the link's directory, got ${JSON.stringify(slots)}`);
  }
  const dir = path.dirname(link);
  await fs.mkdir(dir, { recursive: true });
  const next = await inactiveSlot(link, slots);
  await writeSlot(source, path.join(dir, next), options.mode ?? 0o644);
  const record: SlotFlipRecord = { link, previous: (await readSymlink(link)) ?? null, next };
  await checkpoint(record);
  if (record.previous !== null) await swapSymlink(`${link}.previous`, record.previous);
  await swapSymlink(link, next);
  return record;
}

/**
 * Undoes flipToInactiveSlot: the link points where it did before (or is removed when there
 * was none). Idempotent, so it may run again after a crash mid-rollback; without a record
 * nothing was flipped and nothing is touched.
 */
export async function flipBack(record: SlotFlipRecord | undefined): Promise<void> {
  if (!record) return;
  if (record.previous !== null) await swapSymlink(record.link, record.previous);
  else {
    await fs.rm(record.link, { force: true });
    await fsyncDir(path.dirname(record.link));
  }
}

/** Removes the temp links and files a crash left beside the link and the slots (call from cleanup). */
export async function removeSlotLeftovers(link: string, slots: readonly [string, string]): Promise<void> {
  const dir = path.dirname(link);
  await Promise.all([link, `${link}.previous`, ...slots.map((s) => path.join(dir, s))].map((p) => removeSwapLeftovers(p)));
}
