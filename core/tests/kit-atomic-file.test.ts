// The kit's durable file primitives, run by both drivers (fs.promises and fs's *Sync calls) on
// real files in a temp dir, and the @meshanics/core/kit subpath the server imports them from.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  PRIVATE_DIR_MODE,
  PRIVATE_FILE_MODE,
  PUBLIC_FILE_MODE,
  ensureDirDurableSync,
  ensurePrivateDirSync,
  renameDurableSync,
  writeFileAtomic,
  writeFileAtomicSync,
} from '../src/kit/atomic-file.js';

const CORE = path.resolve(import.meta.dirname, '..');
let dir: string;
const modeOf = (file: string) => fs.statSync(file).mode & 0o777;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-kit-file-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.each([
  { driver: 'async', write: writeFileAtomic },
  { driver: 'sync', write: async (...args: Parameters<typeof writeFileAtomicSync>) => writeFileAtomicSync(...args) },
])('writeFileAtomic ($driver)', ({ write }) => {
  it('writes a new private file by default and leaves no temp file beside it', async () => {
    const file = path.join(dir, 'state.json');
    await write(file, '{"a":1}\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('{"a":1}\n');
    expect(modeOf(file)).toBe(PRIVATE_FILE_MODE);
    expect(fs.readdirSync(dir)).toEqual(['state.json']);
  });

  it('replaces an existing file whole, with the mode asked for', async () => {
    const file = path.join(dir, 'root.json');
    fs.writeFileSync(file, 'old bytes, longer than the new ones');
    await write(file, Buffer.from('new'), { mode: PUBLIC_FILE_MODE });
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(modeOf(file)).toBe(PUBLIC_FILE_MODE);
    expect(fs.readdirSync(dir)).toEqual(['root.json']);
  });

  it('removes its temp file and keeps the target when the rename fails', async () => {
    // A non-empty directory where the file should go: rename(2) refuses it.
    const target = path.join(dir, 'taken');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'inside'), 'kept');
    await expect(write(target, 'x')).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(fs.readdirSync(dir)).toEqual(['taken']);
    expect(fs.readFileSync(path.join(target, 'inside'), 'utf8')).toBe('kept');
  });

  it('fails without creating anything when the directory does not exist', async () => {
    await expect(write(path.join(dir, 'missing', 'file'), 'x')).rejects.toThrow(/ENOENT/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('sync directory and rename primitives', () => {
  it('renameDurableSync moves a written file into place', () => {
    const from = path.join(dir, '.upload.tmp-1');
    const to = path.join(dir, 'artifact.bin');
    fs.writeFileSync(from, 'bytes');
    renameDurableSync(from, to);
    expect(fs.readdirSync(dir)).toEqual(['artifact.bin']);
    expect(fs.readFileSync(to, 'utf8')).toBe('bytes');
  });

  it('ensureDirDurableSync creates every missing level and accepts one that exists', () => {
    const deep = path.join(dir, 'a', 'b', 'c');
    ensureDirDurableSync(deep);
    expect(fs.statSync(deep).isDirectory()).toBe(true);
    ensureDirDurableSync(deep);
    expect(fs.readdirSync(path.join(dir, 'a'))).toEqual(['b']);
  });

  it('ensurePrivateDirSync makes an existing, open directory owner-only', () => {
    const keys = path.join(dir, 'keys');
    fs.mkdirSync(keys, { mode: 0o755 });
    fs.chmodSync(keys, 0o755);
    ensurePrivateDirSync(keys);
    expect(modeOf(keys)).toBe(PRIVATE_DIR_MODE);
  });
});

describe('@meshanics/core/kit', () => {
  it('imports nothing but the kit and the error table (no agent runtime, no third-party package)', () => {
    // The static import graph of src/kit/index.ts; type-only imports vanish at build.
    const seen = new Set<string>();
    const packages = new Set<string>();
    const walk = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = fs.readFileSync(file, 'utf8');
      for (const m of source.matchAll(/^(import|export)(?! type)[^;]*?from '([^']+)';/gms)) {
        const spec = m[2]!;
        if (spec.startsWith('.')) walk(path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts')));
        else packages.add(spec);
      }
    };
    walk(path.join(CORE, 'src', 'kit', 'index.ts'));
    const files = [...seen].map((f) => path.relative(path.join(CORE, 'src'), f)).sort();
    expect(files.filter((f) => !f.startsWith('kit/'))).toEqual(['errors.ts']);
    expect([...packages].every((p) => p.startsWith('node:'))).toBe(true);
  });

  it('resolves through the package exports to the built kit', async () => {
    const script = "const kit = await import('@meshanics/core/kit'); console.log(typeof kit.writeFileAtomicSync, typeof kit.swapIn, 'Agent' in kit);";
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: CORE });
    expect(stdout.trim()).toBe('function function false');
  });
});
