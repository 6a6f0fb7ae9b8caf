// The A/B slot flip of the plugin kit, on real files and symlinks; the crash cases SIGKILL a
// real child process at the point named in each test.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { flipBack, flipToInactiveSlot, inactiveSlot, removeSlotLeftovers, swapSymlink, type SlotFlipRecord } from '../src/index.js';

const SLOTS = ['slot-a', 'slot-b'] as const;
const CHILD = fileURLToPath(new URL('./fixtures/flip-then-hang.mjs', import.meta.url));

async function scratch(): Promise<{ dir: string; link: string; image: (text: string) => Promise<string> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meshanics-ab-'));
  let n = 0;
  return {
    dir,
    link: path.join(dir, 'fw', 'current'),
    image: async (text) => {
      const file = path.join(dir, `image-${n++}`);
      await writeFile(file, text);
      return file;
    },
  };
}

async function killAt(link: string, image: string, recordFile: string, when: 'before' | 'after'): Promise<SlotFlipRecord> {
  const child = spawn(process.execPath, [CHILD, link, image, recordFile, when], { stdio: ['ignore', 'pipe', 'inherit'] });
  const wanted = when === 'before' ? 'checkpointed' : 'flipped';
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes(wanted) && resolve()));
  child.kill('SIGKILL');
  await once(child, 'exit');
  return JSON.parse(await readFile(recordFile, 'utf8')) as SlotFlipRecord;
}

describe('A/B slot flip', () => {
  it('writes the inactive slot, flips the link to it, keeps the old link as .previous, and flips back', async () => {
    const { link, image } = await scratch();
    const first = await flipToInactiveSlot({ link, slots: SLOTS, source: await image('v1'), checkpoint: async () => undefined });
    expect(first).toEqual({ link, previous: null, next: 'slot-a' });
    expect(await readlink(link)).toBe('slot-a');
    expect(await inactiveSlot(link, SLOTS)).toBe('slot-b');
    const checkpoints: SlotFlipRecord[] = [];
    const second = await flipToInactiveSlot({ link, slots: SLOTS, source: await image('v2'), checkpoint: async (r) => void checkpoints.push(r) });
    expect(checkpoints).toEqual([second]);
    expect(await readlink(link)).toBe('slot-b');
    expect(await readlink(`${link}.previous`)).toBe('slot-a');
    expect(await readFile(link, 'utf8')).toBe('v2');
    await flipBack(second);
    await flipBack(second); // idempotent: a crash mid-rollback runs it again
    expect(await readlink(link)).toBe('slot-a');
    expect(await readFile(link, 'utf8')).toBe('v1');
    await flipBack(first);
    await expect(readlink(link)).rejects.toThrow(/ENOENT/);
  });

  it('never writes the live slot: a failing checkpoint leaves the link and the live image as they were', async () => {
    const { link, image } = await scratch();
    await flipToInactiveSlot({ link, slots: SLOTS, source: await image('v1'), checkpoint: async () => undefined });
    await expect(
      flipToInactiveSlot({
        link,
        slots: SLOTS,
        source: await image('v2'),
        checkpoint: async () => {
          throw new Error('disk full');
        },
      }),
    ).rejects.toThrow('disk full');
    expect(await readlink(link)).toBe('slot-a');
    expect(await readFile(link, 'utf8')).toBe('v1');
  });

  it('recovers after kill -9 between the checkpoint and the flip: rollback from the record keeps the old slot live', async () => {
    const { dir, link, image } = await scratch();
    await flipToInactiveSlot({ link, slots: SLOTS, source: await image('v1'), checkpoint: async () => undefined });
    const record = await killAt(link, await image('v2'), path.join(dir, 'record.json'), 'before');
    expect(record).toEqual({ link, previous: 'slot-a', next: 'slot-b' });
    expect(await readlink(link)).toBe('slot-a');
    await flipBack(record);
    await removeSlotLeftovers(link, SLOTS);
    expect(await readFile(link, 'utf8')).toBe('v1');
    expect((await readdir(path.dirname(link))).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('recovers after kill -9 once the link was flipped: rollback from the record restores the old slot', async () => {
    const { dir, link, image } = await scratch();
    await flipToInactiveSlot({ link, slots: SLOTS, source: await image('v1'), checkpoint: async () => undefined });
    const record = await killAt(link, await image('v2'), path.join(dir, 'record.json'), 'after');
    expect(await readFile(link, 'utf8')).toBe('v2');
    await flipBack(record);
    expect(await readlink(link)).toBe('slot-a');
    expect(await readFile(link, 'utf8')).toBe('v1');
  });

  it('removes a temp link a crash left mid-flip', async () => {
    const { link, image } = await scratch();
    await flipToInactiveSlot({ link, slots: SLOTS, source: await image('v1'), checkpoint: async () => undefined });
    // What swapSymlink leaves when killed between creating the new link and renaming it.
    const { symlink } = await import('node:fs/promises');
    await symlink('slot-b', path.join(path.dirname(link), '.current.tmp-0123456789ab'));
    await removeSlotLeftovers(link, SLOTS);
    expect((await readdir(path.dirname(link))).sort()).toEqual(['current', 'slot-a']);
    await swapSymlink(link, 'slot-a');
  });

  it('refuses slots that are not two different names in the link directory', async () => {
    const { link, image } = await scratch();
    await expect(flipToInactiveSlot({ link, slots: ['a', 'a'], source: await image('x'), checkpoint: async () => undefined })).rejects.toThrow(
      /MESH_ERR_SWAP_FAILED|two different names/,
    );
    await expect(flipToInactiveSlot({ link, slots: ['../a', 'b'], source: await image('x'), checkpoint: async () => undefined })).rejects.toThrow(/two different names/);
  });
});
