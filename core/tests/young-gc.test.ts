// The scavenge the download runs every few MiB (transport/young-gc.ts) must actually give
// back the memory of dead records when node runs with the unit's --expose-gc, and must be a
// harmless no-op without it. Real node processes: the flag only exists at start-up.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const YOUNG_GC = fileURLToPath(new URL('../dist/transport/young-gc.js', import.meta.url));

// 2,048 records of 16 KiB, as a TLS download delivers them, dropped at once; then the
// arrayBuffers growth that is still there after collectYoungGarbage().
const SCRIPT = `
import { collectYoungGarbage } from ${JSON.stringify(YOUNG_GC)};
const MiB = 1024 * 1024;
collectYoungGarbage();
const before = process.memoryUsage().arrayBuffers;
let kept = [];
for (let i = 0; i < 2048; i++) kept.push(Buffer.alloc(16 * 1024, i));
kept = [];
const dead = process.memoryUsage().arrayBuffers - before;
collectYoungGarbage();
const after = process.memoryUsage().arrayBuffers - before;
console.log(JSON.stringify({ dead: dead / MiB, after: after / MiB }));
`;

function run(flags: string[]): { dead: number; after: number } {
  const out = execFileSync(process.execPath, [...flags, '--input-type=module', '-e', SCRIPT], { encoding: 'utf8' });
  return JSON.parse(out.trim()) as { dead: number; after: number };
}

describe('collectYoungGarbage', () => {
  it('frees the memory of dead 16 KiB buffers at once under the unit’s --expose-gc', () => {
    const r = run(['--expose-gc', '--max-semi-space-size=1']);
    expect(r.dead).toBeGreaterThan(24);
    expect(r.after).toBeLessThan(8);
  });

  it('does nothing and does not throw without --expose-gc', () => {
    const r = run([]);
    expect(r.dead).toBeGreaterThan(24);
    expect(Number.isFinite(r.after)).toBe(true);
  });
});
