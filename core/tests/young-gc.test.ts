// The scavenge the download runs every few MiB (transport/young-gc.ts) must actually give
// back the memory of dead records: without it they stay until the young generation fills.
import { describe, expect, it } from 'vitest';
import { collectYoungGarbage } from '../src/transport/young-gc.js';

const MiB = 1024 * 1024;

function makeGarbage(): void {
  // 2,048 records of 16 KiB, as a TLS download delivers them, dropped at once.
  let kept: Buffer[] = [];
  for (let i = 0; i < 2048; i++) kept.push(Buffer.alloc(16 * 1024, i));
  kept = [];
  void kept;
}

describe('collectYoungGarbage', () => {
  it('frees the memory of dead 16 KiB buffers at once', () => {
    collectYoungGarbage();
    const before = process.memoryUsage().arrayBuffers;
    makeGarbage();
    const dead = process.memoryUsage().arrayBuffers;
    expect(dead - before).toBeGreaterThan(24 * MiB);
    collectYoungGarbage();
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * MiB);
  });
});
