// A third-party plugin, proven outside the workspace: the example vendor plugin is built as
// its own npm package against a packed @meshanics/core, packed with `npm pack`, installed
// with core into a scratch agent directory (as a device would), taught to the server with
// `plugin-schema add`, and rolled out end to end with real processes.
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRunArgs, serverCli, spawnAgent, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs } from './helpers/steps.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const npm = (args: string[], cwd: string) =>
  run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd, maxBuffer: 16 * 1024 * 1024, timeout: 240_000 });

let work: string;
let install: string;
let serverDir: string;
let server: Child;
let agent: Child | undefined;

async function packed(dir: string, prefix: string): Promise<string> {
  const name = (await readdir(dir)).find((f) => f.startsWith(prefix) && f.endsWith('.tgz'));
  if (!name) throw new Error(`no ${prefix}*.tgz in ${dir}`);
  return path.join(dir, name);
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-vendor-'));
  const tarballs = path.join(work, 'tarballs');
  await mkdir(tarballs);
  // The packages a device installs, exactly as published.
  await npm(['pack', '--pack-destination', tarballs, '-w', '@meshanics/core', '-w', '@meshanics/probe-file'], ROOT);
  const coreTgz = await packed(tarballs, 'meshanics-core-');
  const probeTgz = await packed(tarballs, 'meshanics-probe-file-');

  // The vendor's own build, in a copy outside the repository, against the packed core.
  const vendor = path.join(work, 'vendor');
  await cp(path.join(ROOT, 'examples', 'artifact-directory'), vendor, { recursive: true, filter: (src) => !/node_modules|dist/.test(src) });
  const pkgFile = path.join(vendor, 'package.json');
  const pkg = JSON.parse(await readFile(pkgFile, 'utf8'));
  pkg.devDependencies['@meshanics/core'] = `file:${coreTgz}`;
  await writeFile(pkgFile, JSON.stringify(pkg, null, 2));
  await npm(['install'], vendor);
  await npm(['pack', '--pack-destination', tarballs], vendor);
  const vendorTgz = await packed(tarballs, 'vendor-artifact-directory-');

  // A scratch agent: nothing but the packed packages.
  install = path.join(work, 'agent-install');
  await mkdir(install);
  await writeFile(path.join(install, 'package.json'), JSON.stringify({ name: 'scratch-agent', private: true, type: 'module' }));
  await npm(['install', coreTgz, probeTgz, vendorTgz], install);

  serverDir = path.join(work, 'server');
  await serverCli(serverDir, ['init']);
  const added = await serverCli(serverDir, ['plugin-schema', 'add', path.join(install, 'node_modules', '@vendor', 'artifact-directory', 'dist', 'schema.js')]);
  expect(added).toMatchObject({ what: 'artifact', kind: 'directory' });
  server = await startServer(serverDir);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'vendor', '--name', 'edge-1', '--out', path.join(work, 'creds')]);
}, 300_000);

afterAll(async () => {
  await agent?.stop();
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

const AGENT_CLI = () => path.join(install, 'node_modules', '@meshanics', 'core', 'dist', 'cli', 'agent-cli.js');

function agentArgs(plugins: string): string[] {
  const creds = path.join(work, 'creds');
  return [...agentRunArgs(server, creds, path.join(work, 'agent')), '--plugins', plugins];
}

async function publishTree(version: string, files: Record<string, string>) {
  const tree = path.join(work, `tree-${version}`);
  await mkdir(tree, { recursive: true });
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(tree, name), content);
  const archive = path.join(work, `site-${version}.tar.gz`);
  await run('tar', ['-czf', archive, '-C', tree, '.']);
  await serverCli(serverDir, ['artifact', 'publish', archive, '--name', 'site', '--version', version, '--kind', 'directory', '--spec', '{"compression":"gzip"}']);
}

describe('a vendor plugin outside the workspace', () => {
  it('refuses at start a plugin built for another core API, naming both versions', async () => {
    const bad = path.join(work, 'bad-plugin.mjs');
    await writeFile(
      bad,
      `export default class { name = 'Future'; version = '9.0.0'; coreApi = '^9.0.0'; provides = { artifactKind: 'future' }; specSchema = { type: 'object' }; apply() {} }\n`,
    );
    const result = await run(process.execPath, [AGENT_CLI(), ...agentArgs(`@meshanics/probe-file,${bad}`)]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('plugin Future 9.0.0 supports core API ^9.0.0, but this agent offers 0.1.0');
  });

  it('rolls a directory artifact out: healthy, then a bad version rolled back to the previous tree', async () => {
    agent = spawnAgentFrom(AGENT_CLI(), agentArgs('@vendor/artifact-directory,@meshanics/probe-file'));
    await agent.waitForLine((l) => l?.msg === 'registered');
    const ready = path.join(work, 'ready');
    await writeFile(ready, 'ok');
    await publishTree('1.0.0', { 'index.html': '<h1>v1</h1>', 'app.js': 'console.log(1)' });
    const a1 = await serverCli(serverDir, [
      'assign',
      '--fleet',
      'vendor',
      '--device',
      'edge-1',
      '--artifact',
      'site@1.0.0',
      '--probe-type',
      'file',
      '--probe-spec',
      JSON.stringify({ path: ready }),
    ]);
    expect((await waitForAssignment(serverDir, a1.assignmentId)).state).toBe('HEALTHY');
    const current = path.join(work, 'agent', 'artifacts', 'directory', 'site', 'current');
    expect(await readFile(path.join(current, 'index.html'), 'utf8')).toBe('<h1>v1</h1>');
    const v1Link = await readlink(current);

    await publishTree('2.0.0', { 'index.html': '<h1>v2</h1>' });
    const a2 = await serverCli(serverDir, assignArgs({ fleet: 'vendor', device: 'edge-1', artifact: 'site@2.0.0', readyFile: path.join(work, 'never') }));
    const view = await waitForAssignment(serverDir, a2.assignmentId);
    expect(view.state).toBe('ROLLED_BACK');
    expect(await readlink(current)).toBe(v1Link);
    expect(await readFile(path.join(current, 'index.html'), 'utf8')).toBe('<h1>v1</h1>');
  });

  it('is validated by the server with the vendor schema', async () => {
    const archive = path.join(work, 'site-1.0.0.tar.gz');
    const refused = await serverCli(serverDir, [
      'artifact',
      'publish',
      archive,
      '--name',
      'site',
      '--version',
      '3.0.0',
      '--kind',
      'directory',
      '--spec',
      '{"compression":"zstd"}',
    ]).then(
      () => '',
      (e: Error) => e.message,
    );
    expect(refused).toContain('spec/compression must be one of "none", "gzip"');
  });
});

function spawnAgentFrom(cli: string, args: string[]): Child {
  // The scratch install's own agent binary, not the workspace's.
  return spawnAgent(args, { cli });
}
