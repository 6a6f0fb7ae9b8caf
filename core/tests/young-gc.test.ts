// The scavenge the download runs every few MiB (transport/young-gc.ts) must actually give
// back the memory of dead records when node runs with the unit's --expose-gc, and must be a
// harmless no-op without it. Real node processes: the flag only exists at start-up.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const YOUNG_GC = fileURLToPath(new URL('../dist/transport/young-gc.js', import.meta.url));

// 64 MiB of 16 KiB records, as a TLS download delivers them: each is used and dropped at
// once, and every 4 MiB collectYoungGarbage() runs, as the download loop does. Reported: the
// peak of arrayBuffers (the records' memory outside the V8 heap) above the start.
const SCRIPT = `
import { collectYoungGarbage } from ${JSON.stringify(YOUNG_GC)};
const MiB = 1024 * 1024;
const before = process.memoryUsage().arrayBuffers;
let peak = 0, received = 0, sink = 0;
for (let i = 0; i < 4096; i++) {
  const record = Buffer.alloc(16 * 1024, i & 255);
  sink ^= record[7];
  received += record.length;
  if (received >= 4 * MiB) {
    received = 0;
    collectYoungGarbage();
  }
  if (i % 16 === 0) peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
}
console.log(JSON.stringify({ peak: peak / MiB, sink }));
`;

function run(flags: string[]): { peak: number } {
  const out = execFileSync(process.execPath, [...flags, '--input-type=module', '-e', SCRIPT], { encoding: 'utf8' });
  return JSON.parse(out.trim()) as { peak: number };
}

describe('collectYoungGarbage', () => {
  it('keeps the dead records of a download to a few MiB under --expose-gc (the unit’s flags)', () => {
    const r = run(['--expose-gc', '--max-semi-space-size=1']);
    expect(r.peak).toBeLessThan(12);
  });

  it('does nothing and does not throw without --expose-gc', () => {
    const r = run([]);
    expect(Number.isFinite(r.peak)).toBe(true);
  });
});
