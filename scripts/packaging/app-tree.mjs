// The agent's code as a device gets it: a pruned production node_modules holding
// @meshanics/core, the seven default plugins and the closure of their runtime dependencies,
// copied from the checkout's installed tree (the lockfile's exact versions; no network).
//
// Why a node_modules tree and not an esbuild bundle: the agent loads plugins by package name
// (core never imports a plugin, plugin-loader.ts), vendor plugins import '@meshanics/core'
// and must get the same module instance as the agent, and the proto files and the plugins'
// /schema subpaths are read at run time. Copying the packages keeps every one of those
// resolutions exactly as in the checkout; the measured cost is in docs/benchmarks.md.
import { cp, mkdir, readdir, readFile, realpath, stat, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

/** What the device never reads: type declarations, source maps, docs, tests, build files. */
const DROP_FILE = /(\.d\.ts|\.d\.mts|\.d\.cts|\.map|\.tsbuildinfo|\.md|\.markdown|\.gyp|\.gypi|\.cc|\.h|\.c|Makefile|\.ts)$/i;
const DROP_DIR = new Set(['test', 'tests', '__tests__', 'docs', 'doc', 'example', 'examples', 'benchmark', 'benchmarks', '.github', 'coverage', 'src-ts']);
const KEEP_ALWAYS = /^(LICENSE|LICENCE|COPYING|NOTICE)/i;
/**
 * Optional native add-ons a dependency tries and falls back from (ssh2 -> cpu-features,
 * via dockerode's docker-modem). They are never built (package.json allowScripts) and would
 * make the tree architecture-specific, so they stay out.
 */
const LEAVE_OUT = new Set(['cpu-features']);

async function readJson(file) {
  return JSON.parse(await readFile(file, 'utf8'));
}

/** Node's lookup of a bare package name from DIR upwards, stopping at ROOT. */
function resolvePackageDir(name, fromDir, root) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir === path.dirname(dir)) return undefined;
  }
}

async function copyFiltered(src, dest) {
  await cp(src, dest, {
    recursive: true,
    dereference: true,
    filter: (file) => {
      const base = path.basename(file);
      if (file === src || KEEP_ALWAYS.test(base)) return true;
      if (base === 'node_modules') return false; // nested deps are copied as packages of their own
      if (DROP_DIR.has(base) && statSync(file).isDirectory()) return false;
      return !DROP_FILE.test(base);
    },
  });
}

/**
 * Copies PACKAGES (names resolvable from ROOT, e.g. '@meshanics/core') and their runtime
 * dependency closure into OUT/node_modules, keeping the checkout's nesting. `rewrite(name, pkg)`
 * may change a copied package.json (the agent's version). Returns what was copied.
 */
export async function buildAppTree({ root, packages, out, rewrite = () => {} }) {
  const seen = new Map(); // real dir -> destination
  const queue = packages.map((name) => ({ name, from: root }));
  const report = [];
  while (queue.length > 0) {
    const { name, from } = queue.shift();
    if (LEAVE_OUT.has(name)) continue;
    const linkDir = resolvePackageDir(name, from, root);
    if (!linkDir) throw new Error(`cannot resolve ${name} from ${from}: run npm ci first`);
    const real = await realpath(linkDir);
    if (seen.has(real)) continue;
    // Hoisted or nested, the package lands where the checkout has it relative to ROOT, so the
    // device resolves exactly the versions the lockfile chose.
    const dest = path.join(out, path.relative(root, linkDir));
    seen.set(real, dest);
    const pkg = await readJson(path.join(real, 'package.json'));
    const workspace = !real.includes(`${path.sep}node_modules${path.sep}`);
    if (workspace) {
      // A workspace package ships what `npm pack` would: package.json and its "files".
      await mkdir(dest, { recursive: true });
      for (const entry of pkg.files ?? []) {
        if (existsSync(path.join(real, entry))) await copyFiltered(path.join(real, entry), path.join(dest, entry));
      }
    } else {
      await copyFiltered(real, dest);
    }
    rewrite(name, pkg);
    await writeFile(path.join(dest, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
    report.push({ name, version: pkg.version, dest: path.relative(out, dest) });
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      queue.push({ name: dep, from: linkDir });
    }
  }
  await refuseNative(out);
  return report;
}

/** The tree must be the same for both architectures: no compiled add-on may slip in. */
async function refuseNative(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(entry.parentPath ?? dir, entry.name);
    if (entry.isDirectory()) await refuseNative(file);
    else if (entry.name.endsWith('.node')) throw new Error(`native add-on ${file} in the agent tree: it would not run on the other architecture`);
  }
}

/** Bytes under DIR (files and symlinks themselves, as dpkg counts them). */
export async function treeBytes(dir) {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}
