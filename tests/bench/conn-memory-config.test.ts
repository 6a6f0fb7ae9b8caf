// The conn-memory suite measures `serve` as the server image runs it: the allocator setting
// the image's Containerfile gives the server (MALLOC_MMAP_THRESHOLD_) is the one the suite
// gives it, and only to the server (the echo server is the bare baseline).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CONFIG, SERVER_IMAGE_ENV } from '../../bench/suites/conn-memory.mjs';

const containerfile = readFileSync(fileURLToPath(new URL('../../deploy/server/Containerfile', import.meta.url)), 'utf8');

describe('conn-memory suite and the server image', () => {
  it('gives the server the allocator setting of the image', () => {
    const m = /^\s*MALLOC_MMAP_THRESHOLD_=(\d+)\b/m.exec(containerfile);
    expect(m, 'the Containerfile sets MALLOC_MMAP_THRESHOLD_').not.toBeNull();
    expect(SERVER_IMAGE_ENV).toEqual({ MALLOC_MMAP_THRESHOLD_: m![1] });
    for (const mode of ['full', 'smoke'] as const) expect(CONFIG[mode].serverEnv).toEqual(SERVER_IMAGE_ENV);
  });
});
