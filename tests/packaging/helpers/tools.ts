// What the packaging tests need from the machine, and the shared package build.
// In CI a missing tool is a failure; elsewhere the tests skip, saying what is missing and how
// to get it (scripts/packaging/prereqs.sh installs all of it).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const OUT = path.join(ROOT, 'dist-packages');
export const CACHE = path.join(ROOT, '.cache', 'packaging');
const CI = process.env.CI === 'true' || process.env.CI === '1';

const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** Undefined when everything is there; else why the tests cannot run (thrown in CI). */
export function missingTools(needs: string[]): string | undefined {
  const missing = needs.filter((n) => (n.startsWith('/') ? !existsSync(n) : !has(n)));
  if (process.getuid?.() !== 0 && needs.includes('podman')) missing.push('root (podman import/run as root)');
  if (missing.length === 0) return undefined;
  const why = `missing ${missing.join(', ')}: run scripts/packaging/prereqs.sh (apt packages)`;
  if (CI) throw new Error(why);
  return why;
}

export interface Manifest {
  version: string;
  nodeVersion: string;
  buildMs: number;
  artifacts: Array<{ arch: string; file: string; bytes: number; installedKiB?: number }>;
}

/**
 * `npm run package` once per tree: every test file calls this; the first builds, the others
 * wait on the build's lock and reuse dist-packages/ (its key hashes every input).
 */
export function ensurePackages(): Manifest {
  const out = execFileSync(process.execPath, [path.join(ROOT, 'scripts/packaging/build.mjs'), '--if-changed'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(out) as Manifest;
}

export function artifact(manifest: Manifest, suffix: string): string {
  const found = manifest.artifacts.find((a) => a.file.endsWith(suffix));
  if (!found) throw new Error(`no *${suffix} in dist-packages/`);
  return path.join(OUT, found.file);
}
