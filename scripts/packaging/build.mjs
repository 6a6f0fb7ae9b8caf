#!/usr/bin/env node
// `npm run package`: the agent as a device package (issue 24). Builds under dist-packages/:
//   meshanics-agent_<version>_{amd64,arm64}.deb, meshanics-agent-<version>-linux-{x64,arm64}.tar.gz
//   (the same tree, rooted at /, for images that are not Debian-based), SHA256SUMS, and
//   build.json (what was built from what; sizes).
// Needs a built checkout (npm run build) and scripts/packaging/prereqs.sh's tools.
//   --if-changed   reuse dist-packages/ when its inputs are unchanged (the tests' shared build)
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildAppTree, treeBytes } from './app-tree.mjs';
import { buildDeb } from './deb.mjs';
import { writeLayout } from './layout.mjs';
import { ARCHES, NODE_VERSION, nodeRuntime } from './node-runtime.mjs';
import { packageVersion } from './version.mjs';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const OUT = path.join(REPO, 'dist-packages');
const CACHE = path.join(REPO, '.cache', 'packaging');
const PLUGINS = ['artifact-model', 'artifact-config', 'artifact-container', 'artifact-agent', 'probe-exec', 'probe-http', 'probe-file'];
const log = (msg) => process.stderr.write(`[package] ${msg}\n`);

/** Every input of the packages, hashed: a build with the same key is the same build. */
async function inputKey(version) {
  const hash = createHash('sha256').update(`${version}\0${NODE_VERSION}\0`);
  const roots = [
    'package-lock.json',
    'core/package.json',
    'core/dist',
    'core/proto',
    'core/systemd',
    'packaging',
    'scripts/packaging',
    ...PLUGINS.flatMap((p) => [`plugins/${p}/package.json`, `plugins/${p}/dist`]),
  ];
  const files = [];
  for (const r of roots) {
    const abs = path.join(REPO, r);
    if (!existsSync(abs)) throw new Error(`${r} is missing: run npm run build first`);
    if ((await stat(abs)).isFile()) files.push(abs);
    else for (const e of await readdir(abs, { withFileTypes: true, recursive: true })) if (e.isFile()) files.push(path.join(e.parentPath, e.name));
  }
  for (const f of files.sort()) hash.update(`${path.relative(REPO, f)}\0`).update(await readFile(f));
  return hash.digest('hex');
}

async function sha256(file) {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk);
  return h.digest('hex');
}

/** One build at a time per checkout (test files run in parallel and share the result). */
async function withLock(fn) {
  const lock = path.join(REPO, '.cache', 'packaging.lock');
  await mkdir(path.dirname(lock), { recursive: true });
  for (let waited = 0; ; waited += 500) {
    try {
      await mkdir(lock);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      // A lock older than 10 minutes belongs to a build that died.
      if (Date.now() - (await stat(lock).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs > 600_000) await rm(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

export async function buildPackages({ ifChanged = false } = {}) {
  return withLock(async () => {
    const started = Date.now();
    const version = packageVersion(REPO);
    const key = await inputKey(version);
    const manifestFile = path.join(OUT, 'build.json');
    if (ifChanged && existsSync(manifestFile)) {
      const previous = JSON.parse(await readFile(manifestFile, 'utf8'));
      if (previous.key === key && previous.artifacts.every((a) => existsSync(path.join(OUT, a.file)))) {
        log(`dist-packages/ is up to date (${version})`);
        return previous;
      }
    }
    log(`building ${version} with Node.js ${NODE_VERSION}`);
    await rm(OUT, { recursive: true, force: true });
    const stage = path.join(OUT, '.stage');
    await mkdir(stage, { recursive: true });
    const [runtimes] = await Promise.all([
      Promise.all(Object.keys(ARCHES).map((arch) => nodeRuntime(CACHE, arch, log))),
      buildAppTree({
        root: REPO,
        packages: ['@meshanics/core', ...PLUGINS.map((p) => `@meshanics/${p}`)],
        out: path.join(stage, 'app'),
        // The agent reports core's package.json version (--version, heartbeats): the build's.
        rewrite: (name, pkg) => {
          if (name === '@meshanics/core') pkg.version = version;
        },
      }),
    ]);
    const appBytes = await treeBytes(path.join(stage, 'app'));
    const artifacts = [];
    await Promise.all(
      Object.entries(ARCHES).map(async ([arch, info], i) => {
        const rootDir = path.join(stage, arch);
        await writeLayout({ repo: REPO, rootDir, version, appModules: path.join(stage, 'app', 'node_modules'), runtimeDir: runtimes[i] });
        const tarball = `meshanics-agent-${version}-${info.tarball}.tar.gz`;
        // etc/ and usr/ only: no ./ entry, so `tar -xzf ... -C /` never touches / itself.
        await run('tar', ['-czf', path.join(OUT, tarball), '--owner=0', '--group=0', '--numeric-owner', '--sort=name', '-C', rootDir, 'etc', 'usr']);
        const deb = await buildDeb({ repo: REPO, rootDir, version, arch, out: OUT });
        const nodeBytes = (await stat(path.join(runtimes[i], 'node'))).size;
        artifacts.push({ arch, file: path.basename(deb.file), bytes: (await stat(deb.file)).size, installedKiB: deb.installedKiB, nodeBytes, appBytes });
        artifacts.push({ arch, file: tarball, bytes: (await stat(path.join(OUT, tarball))).size });
      }),
    );
    artifacts.sort((a, b) => a.file.localeCompare(b.file));
    const sums = await Promise.all(artifacts.map(async (a) => `${await sha256(path.join(OUT, a.file))}  ${a.file}\n`));
    await writeFile(path.join(OUT, 'SHA256SUMS'), sums.join(''));
    await rm(stage, { recursive: true, force: true });
    const manifest = { version, nodeVersion: NODE_VERSION, key, buildMs: Date.now() - started, artifacts };
    await writeFile(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
    log(`done in ${(manifest.buildMs / 1000).toFixed(1)} s: ${artifacts.map((a) => `${a.file} ${(a.bytes / 1e6).toFixed(1)} MB`).join(', ')}`);
    return manifest;
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  buildPackages({ ifChanged: process.argv.includes('--if-changed') }).then(
    (m) => process.stdout.write(`${JSON.stringify(m, null, 2)}\n`),
    (err) => {
      process.stderr.write(`[package] failed: ${err.stack ?? err}\n`);
      process.exitCode = 1;
    },
  );
}
