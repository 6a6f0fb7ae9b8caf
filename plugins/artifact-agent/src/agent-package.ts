// The agent package (`npm run package`'s linux tarball, issue 24) as this plugin reads it:
//   ./usr/lib/meshanics-agent/versions/<version>/{bin/node, bin/meshanics-agent, node_modules/}
// plus files the self-update does not use (/usr/bin link, conffile, unit). Only the version
// directory is installed; its core package.json says the version, its bin/node (an ELF
// executable) says the architecture.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { MeshError } from '@meshanics/core';
import type { AgentArchitecture } from './schema.js';

const run = promisify(execFile);

/** Where the package keeps its versions, relative to the tarball's root. */
export const PACKAGE_VERSIONS_DIR = 'usr/lib/meshanics-agent/versions';
const CORE_PACKAGE_JSON = 'node_modules/@meshanics/core/package.json';

/** ELF e_machine values of the architectures a package is built for. */
const ELF_MACHINES: Record<number, AgentArchitecture> = { 62: 'x64', 183: 'arm64' };

export interface AgentPackage {
  version: string;
  architecture: AgentArchitecture | `unknown (${string})`;
  /** The unpacked versions/<version> directory. */
  versionDir: string;
}

/** Unpacks the tarball into `dir` with the system tar (GNU tar refuses `..` members and strips `/`). */
export async function unpackAgentPackage(tarball: string, dir: string, signal?: AbortSignal): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // `npm run package` writes its members without a leading ./ (scripts/packaging/build.mjs:
  // `tar -C root etc usr`), a tarball made with `tar -C root .` has it; GNU tar matches a
  // member name only as written, so try both (the server's publish check accepts both too).
  let detail = '';
  for (const member of [PACKAGE_VERSIONS_DIR, `./${PACKAGE_VERSIONS_DIR}`]) {
    try {
      await run('tar', ['-xzf', tarball, '-C', dir, '--no-same-owner', member], { signal, maxBuffer: 1024 * 1024 });
      return;
    } catch (err) {
      if (signal?.aborted) throw err;
      detail = ((err as { stderr?: string }).stderr || (err as Error).message).trim();
    }
  }
  throw new MeshError('MESH_ERR_AGENT_UPDATE_REFUSED', `not an agent package (no ${PACKAGE_VERSIONS_DIR}/ in the tarball): ${detail}`);
}

async function elfArchitecture(file: string): Promise<AgentPackage['architecture']> {
  const handle = await fs.open(file, 'r');
  try {
    const head = Buffer.alloc(20);
    const { bytesRead } = await handle.read(head, 0, 20, 0);
    if (bytesRead < 20 || head.readUInt32BE(0) !== 0x7f454c46) return 'unknown (not an ELF executable)';
    const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
    return ELF_MACHINES[machine] ?? `unknown (ELF machine ${machine})`;
  } finally {
    await handle.close();
  }
}

/** Reads what an unpacked package is: exactly one version directory, its version and architecture. */
export async function inspectAgentPackage(dir: string): Promise<AgentPackage> {
  const versionsDir = path.join(dir, PACKAGE_VERSIONS_DIR);
  const entries = await fs.readdir(versionsDir, { withFileTypes: true });
  const dirs = entries.filter((e) => e.isDirectory());
  if (dirs.length !== 1 || entries.length !== 1) {
    throw new MeshError(
      'MESH_ERR_AGENT_UPDATE_REFUSED',
      `an agent package holds exactly one ${PACKAGE_VERSIONS_DIR}/<version>/ directory; this one has ${entries.map((e) => e.name).join(', ') || 'none'}`,
    );
  }
  const versionDir = path.join(versionsDir, dirs[0]!.name);
  let version: string;
  try {
    version = (JSON.parse(await fs.readFile(path.join(versionDir, CORE_PACKAGE_JSON), 'utf8')) as { version: string }).version;
  } catch (err) {
    throw new MeshError('MESH_ERR_AGENT_UPDATE_REFUSED', `cannot read the package's ${CORE_PACKAGE_JSON}: ${(err as Error).message}`);
  }
  if (version !== dirs[0]!.name) {
    throw new MeshError('MESH_ERR_AGENT_UPDATE_REFUSED', `the package's directory says version ${dirs[0]!.name} but its core package.json says ${version}`);
  }
  let architecture: AgentPackage['architecture'];
  try {
    architecture = await elfArchitecture(path.join(versionDir, 'bin', 'node'));
  } catch (err) {
    architecture = `unknown (${(err as NodeJS.ErrnoException).code ?? (err as Error).message} reading bin/node)`;
  }
  return { version, architecture, versionDir };
}
