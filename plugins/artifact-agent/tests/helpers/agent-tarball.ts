// A minimal agent package for tests, built from this checkout with the top-level layout of
// `npm run package`'s tarball (scripts/packaging/layout.mjs, issue 24):
//   ./usr/lib/meshanics-agent/versions/<version>/{bin/node, bin/meshanics-agent, node_modules/@meshanics/*}
//   ./usr/lib/meshanics-agent/current -> versions/<version>, ./usr/bin/meshanics-agent
// Differences from the real package, on purpose (a real one takes minutes and 30 MB): bin/node
// is a symlink to the machine's node (its ELF header still says the real architecture), and
// node_modules holds only @meshanics/* (core's version rewritten, as the package build does);
// their third-party dependencies resolve from a node_modules further up (the checkout's).
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const PLUGINS = ['artifact-model', 'artifact-config', 'artifact-container', 'artifact-agent', 'probe-exec', 'probe-http', 'probe-file'];

/** The launcher, as packaging/files/meshanics-agent.sh runs the agent (without its data-dir defaults). */
export const LAUNCHER = `#!/bin/sh
set -e
here=$(dirname "$(readlink -f "$0")")
version_dir=$(dirname "$here")
exec "$here/node" "$version_dir/node_modules/@meshanics/core/dist/cli/agent-cli.js" "$@"
`;

export type AgentVariant =
  | 'good'
  /** exits 1 at start, before any of core runs */
  | 'exits-at-start'
  /** starts and stays up but never registers or heartbeats */
  | 'never-heartbeats';

export interface TarballOptions {
  version: string;
  out: string;
  variant?: AgentVariant;
  /** What bin/node is: default the machine's node. A file path is copied (an arm64 ELF header, say). */
  node?: { symlinkTo: string } | { file: string };
  /** The core package.json version, when it must differ from the directory (a mislabelled package). */
  coreVersion?: string;
}

/** Writes `<rootDir>/usr/lib/meshanics-agent/versions/<version>/...` (the tree the tarball holds). */
export async function writeAgentTree(rootDir: string, options: Omit<TarballOptions, 'out'>): Promise<string> {
  const lib = path.join(rootDir, 'usr/lib/meshanics-agent');
  const vdir = path.join(lib, 'versions', options.version);
  const mods = path.join(vdir, 'node_modules', '@meshanics');
  await mkdir(path.join(vdir, 'bin'), { recursive: true });
  const copyPackage = async (src: string, name: string, extra: string[]) => {
    const dest = path.join(mods, name);
    await mkdir(dest, { recursive: true });
    for (const entry of ['dist', ...extra]) await cp(path.join(src, entry), path.join(dest, entry), { recursive: true, filter: (f) => !f.endsWith('.tsbuildinfo') });
    const pkg = JSON.parse(await readFile(path.join(src, 'package.json'), 'utf8'));
    if (name === 'core') pkg.version = options.coreVersion ?? options.version;
    await writeFile(path.join(dest, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  };
  await copyPackage(path.join(REPO, 'core'), 'core', ['proto', 'systemd']);
  for (const p of PLUGINS) await copyPackage(path.join(REPO, 'plugins', p), p, []);
  const cli = path.join(mods, 'core', 'dist', 'cli', 'agent-cli.js');
  if (options.variant === 'exits-at-start') await writeFile(cli, "#!/usr/bin/env node\nprocess.stderr.write('broken agent\\n');\nprocess.exit(1);\n");
  if (options.variant === 'never-heartbeats') {
    await writeFile(cli, "#!/usr/bin/env node\nprocess.stdout.write(JSON.stringify({ msg: 'agent starting (never heartbeats)' }) + '\\n');\nsetInterval(() => {}, 60_000);\n");
  }
  const node = options.node ?? { symlinkTo: process.execPath };
  if ('symlinkTo' in node) await symlink(node.symlinkTo, path.join(vdir, 'bin', 'node'));
  else await cp(node.file, path.join(vdir, 'bin', 'node'));
  await writeFile(path.join(vdir, 'bin', 'meshanics-agent'), LAUNCHER);
  await chmod(path.join(vdir, 'bin', 'meshanics-agent'), 0o755);
  await symlink(`versions/${options.version}`, path.join(lib, 'current')).catch(() => undefined);
  await mkdir(path.join(rootDir, 'usr/bin'), { recursive: true });
  await symlink('../lib/meshanics-agent/current/bin/meshanics-agent', path.join(rootDir, 'usr/bin/meshanics-agent')).catch(() => undefined);
  return lib;
}

/** Builds the tarball at `out` (rooted at `.`, like the package's). */
export async function buildAgentTarball(options: TarballOptions): Promise<string> {
  const stage = await mkdtemp(path.join(os.tmpdir(), 'meshanics-agent-pkg-'));
  try {
    await writeAgentTree(stage, options);
    await run('tar', ['-czf', options.out, '--owner=0', '--group=0', '--numeric-owner', '-C', stage, '.']);
    return options.out;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** A file that starts like an arm64 Linux executable (an ELF header with e_machine 183). */
export async function writeArm64ElfHeader(file: string): Promise<void> {
  const head = Buffer.alloc(64);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2; // 64-bit
  head[5] = 1; // little endian
  head.writeUInt16LE(2, 16); // ET_EXEC
  head.writeUInt16LE(183, 18); // EM_AARCH64
  await writeFile(file, head, { mode: 0o755 });
}
