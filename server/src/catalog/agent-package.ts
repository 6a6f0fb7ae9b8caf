// An `agent` artifact (issue 28) is the agent package's tarball; its own version is what the
// agent will report, so the server refuses at publish a tarball whose core package.json (the
// version the package build wrote) differs from the artifact version: a rollout of "1.2.0"
// that installs something else could never be confirmed. The device checks it again.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MeshError } from '../errors.js';

const run = promisify(execFile);
export const AGENT_KIND = 'agent';
/** Where the package build writes the version (scripts/packaging/layout.mjs, issue 24). */
const CORE_PACKAGE_JSON = /^(\.\/)?usr\/lib\/meshanics-agent\/versions\/([^/]+)\/node_modules\/@meshanics\/core\/package\.json$/;

function mismatch(message: string): never {
  throw new MeshError('MESH_ERR_ARTIFACT_PACKAGE_MISMATCH', message);
}

/** Reads the tarball's core package.json (with the system tar) and holds its version to `version`. */
export async function assertAgentPackageVersion(file: string, version: string): Promise<void> {
  let listing: string;
  try {
    listing = (await run('tar', ['-tzf', file], { maxBuffer: 256 * 1024 * 1024 })).stdout;
  } catch (err) {
    mismatch(`${file} is not a gzip tar archive (an agent package from npm run package): ${((err as { stderr?: string }).stderr || (err as Error).message).trim()}`);
  }
  const members = listing.split('\n').filter((name) => CORE_PACKAGE_JSON.test(name));
  if (members.length !== 1) {
    mismatch(
      `${file} is not an agent package: it must hold exactly one usr/lib/meshanics-agent/versions/<version>/node_modules/@meshanics/core/package.json (found ${members.length})`,
    );
  }
  const member = members[0]!;
  const dirVersion = CORE_PACKAGE_JSON.exec(member)![2];
  let packageVersion: unknown;
  try {
    packageVersion = (JSON.parse((await run('tar', ['-xzOf', file, member], { maxBuffer: 1024 * 1024 })).stdout) as { version?: unknown }).version;
  } catch (err) {
    mismatch(`cannot read ${member} in ${file}: ${(err as Error).message}`);
  }
  if (packageVersion !== version || dirVersion !== version) {
    mismatch(
      `the agent package is version ${String(packageVersion)} (directory versions/${dirVersion}) but the artifact version is ${version}: publish it as ${String(packageVersion)}`,
    );
  }
}
