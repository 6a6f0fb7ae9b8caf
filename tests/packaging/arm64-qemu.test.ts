// The arm64 package's agent on this amd64 machine (issue 24): its files unpacked with
// `dpkg-deb -x`, its own arm64 Node.js run under Debian's qemu-user-static called directly
// (`-L` points the arm64 dynamic loader at Debian's cross libraries; no binfmt registration),
// then --version, one enrollment and one healthy model update against a real server from
// this checkout.
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Child, serverCli, startServer, waitForAssignment } from '../../scripts/lib/processes.mjs';
import { publishModel } from '../e2e/helpers/steps.js';
import { artifact, ensurePackages, missingTools, type Manifest } from './helpers/tools.js';

const run = promisify(execFile);
const CROSS = '/usr/aarch64-linux-gnu';
const skip = missingTools(['qemu-aarch64-static', `${CROSS}/lib/ld-linux-aarch64.so.1`, `${CROSS}/lib/libstdc++.so.6`, 'dpkg-deb', 'strip', 'aarch64-linux-gnu-strip']);

let manifest: Manifest;
let work: string;
let root: string;
let serverDir: string;
let server: Child;
let agent: Child | undefined;

/** `node ARGS` of the arm64 package, under qemu. */
function arm64Node(): string[] {
  const lib = path.join(root, 'usr/lib/meshanics-agent/current');
  return ['-L', CROSS, path.join(lib, 'bin/node'), path.join(lib, 'node_modules/@meshanics/core/dist/cli/agent-cli.js')];
}

beforeAll(async () => {
  if (skip) return;
  manifest = ensurePackages();
  work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-pkg-arm64-'));
  root = path.join(work, 'root');
  await run('dpkg-deb', ['-x', artifact(manifest, '_arm64.deb'), root]);
  serverDir = path.join(work, 'server');
  server = await startServer(serverDir);
}, 1_200_000);

afterAll(async () => {
  await agent?.stop();
  await server?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe.skipIf(Boolean(skip))(`the arm64 package under qemu-aarch64-static${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('is an arm64 package whose agent prints its versions on its own arm64 Node.js', async () => {
    expect((await run('dpkg-deb', ['-f', artifact(manifest, '_arm64.deb'), 'Architecture'])).stdout.trim()).toBe('arm64');
    const elf = await readFile(path.join(root, 'usr/lib/meshanics-agent/current/bin/node'));
    expect(elf.readUInt16LE(18)).toBe(183); // e_machine EM_AARCH64: not the host's binary
    const { stdout } = await run('qemu-aarch64-static', [...arm64Node(), '--version'], { timeout: 60_000 });
    expect(stdout).toBe(`meshanics-agent ${manifest.version}\ncore API 0.1.0\nNode.js v${manifest.nodeVersion} (linux-arm64)\n`);
  }, 120_000);

  it('ships the tree of the .deb as the linux-arm64 tarball, all four files listed in SHA256SUMS', async () => {
    const paths = (lines: string) =>
      lines
        .split('\n')
        .filter(Boolean)
        .map((l) => l.replace(/^\.\//, '').replace(/\/$/, ''))
        .filter((p) => p && p !== '.')
        .sort();
    const debList = (await run('sh', ['-c', `dpkg-deb --fsys-tarfile '${artifact(manifest, '_arm64.deb')}' | tar -t`], { maxBuffer: 1 << 26 })).stdout;
    const tarList = (await run('tar', ['-tzf', artifact(manifest, '-linux-arm64.tar.gz')], { maxBuffer: 1 << 26 })).stdout;
    expect(paths(tarList)).toEqual(paths(debList));
    expect(paths(tarList)).toContain('usr/bin/meshanics-agent');
    const checked = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.dirname(artifact(manifest, '_arm64.deb')) });
    expect(checked.stdout.split('\n').filter((l) => l.endsWith(': OK'))).toHaveLength(4);
  }, 120_000);

  it('enrolls with a token and takes a healthy model update', async () => {
    const { token } = await serverCli(serverDir, ['enroll-token', 'create', '--fleet', 'arm']);
    const fingerprint = new X509Certificate(await readFile(path.join(serverDir, 'pki', 'ca.crt'))).fingerprint256;
    const dataDir = path.join(work, 'agent');
    // No /etc/meshanics/agent.json on this host: the agent's defaults (deny all) apply.
    const enrolled = await run(
      'qemu-aarch64-static',
      [...arm64Node(), 'enroll', '--server', server.enroll, '--token', token, '--name', 'edge-arm64', '--ca-fingerprint', fingerprint, '--data-dir', dataDir],
      { timeout: 120_000 },
    );
    expect(enrolled.stderr).toBe('');
    const proc = spawn('qemu-aarch64-static', [...arm64Node(), 'run', '--data-dir', dataDir, '--container-runtime', 'none'], { stdio: ['ignore', 'pipe', 'pipe'] });
    agent = new Child('arm64-agent', proc);
    await agent.waitForLine((l: any) => l?.msg === 'registered', 120_000);
    const ready = path.join(work, 'ready');
    await writeFile(ready, 'ok');
    await chmod(ready, 0o644);
    await publishModel(serverDir, work, { name: 'detector', version: '1.0.0' }, Buffer.from('arm64 model'));
    const a = await serverCli(serverDir, [
      'assign',
      '--fleet',
      'arm',
      '--device',
      'edge-arm64',
      '--artifact',
      'detector@1.0.0',
      '--probe-type',
      'file',
      '--probe-spec',
      JSON.stringify({ path: ready }),
    ]);
    expect((await waitForAssignment(serverDir, a.assignmentId, { timeoutMs: 120_000 })).state).toBe('HEALTHY');
  }, 300_000);
});
