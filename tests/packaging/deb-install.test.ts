// The amd64 .deb on a device that has never seen node or npm (issue 24): installed with
// `dpkg -i` into a minimal Debian bookworm root (mmdebstrap, run as a podman container on the
// host network, see helpers/debian-root.ts), enrolled with a token against a real
// meshanics-server started from this checkout, updated (a healthy model, a bad one rolled
// back, the example vendor plugin dropped into the package's plugins dir), then removed and
// purged, with what remains listed.
import { X509Certificate } from 'node:crypto';
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { publishModel } from '../e2e/helpers/steps.js';
import { DebianRoot } from './helpers/debian-root.js';
import { leftovers, snapshot } from './helpers/leftovers.js';
import { artifact, ensurePackages, missingTools, OUT, ROOT, type Manifest } from './helpers/tools.js';

const run = promisify(execFile);
const skip = missingTools(['mmdebstrap', 'podman', 'runc', 'dpkg-deb', 'strip', 'aarch64-linux-gnu-strip', 'npm']);
const VENDOR = '@vendor/artifact-directory';
const DEFAULTS = [
  '@meshanics/artifact-model',
  '@meshanics/artifact-config',
  '@meshanics/artifact-container',
  '@meshanics/probe-exec',
  '@meshanics/probe-http',
  '@meshanics/probe-file',
];

let manifest: Manifest;
let work: string;
let serverDir: string;
let server: Child;
let device: DebianRoot;
let agent: (Child & { stopInside: () => Promise<unknown> }) | undefined;
let caFingerprint: string;
let vendorTgz: string;
let before: string[];

/** The example vendor plugin as its vendor ships it: one packed npm package, its dependency bundled. */
async function packVendorPlugin(): Promise<{ tgz: string; schema: string }> {
  const npm = (args: string[], cwd: string) =>
    run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  const tarballs = path.join(work, 'tarballs');
  await mkdir(tarballs, { recursive: true });
  await npm(['pack', '--pack-destination', tarballs, '-w', '@meshanics/core'], ROOT);
  const coreTgz = path.join(
    tarballs,
    (await readdir(tarballs)).find((f) => f.startsWith('meshanics-core-'))!,
  );
  const vendor = path.join(work, 'vendor');
  await cp(path.join(ROOT, 'examples', 'artifact-directory'), vendor, { recursive: true, filter: (src) => !/node_modules|dist/.test(src) });
  const pkg = JSON.parse(await readFile(path.join(vendor, 'package.json'), 'utf8'));
  pkg.devDependencies['@meshanics/core'] = `file:${coreTgz}`;
  // No npm on the device: the plugin's own dependency (tar) travels inside its package.
  pkg.bundleDependencies = Object.keys(pkg.dependencies);
  await writeFile(path.join(vendor, 'package.json'), JSON.stringify(pkg, null, 2));
  await npm(['install'], vendor);
  const { stdout } = await npm(['pack', '--pack-destination', tarballs, '--json'], vendor);
  return { tgz: path.join(tarballs, JSON.parse(stdout)[0].filename), schema: path.join(vendor, 'dist', 'schema.js') };
}

beforeAll(async () => {
  if (skip) return;
  manifest = ensurePackages();
  work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-pkg-deb-'));
  // The agent runs as the package's `meshanics` user inside; it reads the probe's ready file here.
  await chmod(work, 0o755);
  const vendorPlugin = await packVendorPlugin();
  vendorTgz = vendorPlugin.tgz;
  serverDir = path.join(work, 'server');
  await serverCli(serverDir, ['init']);
  await serverCli(serverDir, ['plugin-schema', 'add', vendorPlugin.schema]);
  server = await startServer(serverDir);
  caFingerprint = new X509Certificate(await readFile(path.join(serverDir, 'pki', 'ca.crt'))).fingerprint256;
  device = await DebianRoot.start(`meshanics-pkg-deb-${process.pid}`, [work, OUT]);
  before = await snapshot(device);
}, 900_000);

afterAll(async () => {
  await agent?.stopInside().catch(() => undefined);
  await device?.remove();
  await server?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const token = async () => (await serverCli(serverDir, ['enroll-token', 'create', '--fleet', 'pkg'])).token as string;
const assign = (spec: string[]) => serverCli(serverDir, ['assign', '--fleet', 'pkg', '--device', 'edge-pkg', ...spec]);

describe.skipIf(Boolean(skip))(`the amd64 .deb in a Debian root without node or npm${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('installs with dpkg -i: the agent runs on its own Node.js 24, the data dir belongs to the meshanics user', async () => {
    const noNode = await device.sh('command -v node || command -v npm || echo none');
    expect(noNode.stdout.trim()).toBe('none');
    const installed = await device.sh(`dpkg -i ${artifact(manifest, '_amd64.deb')}`);
    expect(installed.stderr).not.toMatch(/error/i);
    expect(installed.code).toBe(0);
    const version = await device.sh('meshanics-agent --version');
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`meshanics-agent ${manifest.version}\ncore API 0.1.0\nNode.js v${manifest.nodeVersion} (linux-x64)\n`);
    expect((await device.sh("dpkg-query -W -f='${Version} ${Architecture}' meshanics-agent")).stdout).toBe(`${manifest.version} amd64`);
    expect((await device.sh('stat -c "%U %G %a" /var/lib/meshanics-agent')).stdout.trim()).toBe('meshanics meshanics 700');
    // Self-update (issue 28): the agent may add versions and switch its links; the packaged files stay root's.
    expect((await device.sh('stat -c "%U" /usr/lib/meshanics-agent /usr/lib/meshanics-agent/versions')).stdout.trim().split('\n')).toEqual(['meshanics', 'meshanics']);
    expect((await device.sh('stat -c "%U" /usr/lib/meshanics-agent/current/bin/node')).stdout.trim()).toBe('root');
    const unit = (await device.sh('cat /usr/lib/systemd/system/meshanics-agent.service')).stdout;
    expect(unit).toMatch(/^ReadWritePaths=\/var\/lib\/meshanics-agent \/usr\/lib\/meshanics-agent$/m);
    expect(unit).toMatch(/^ExecStopPost=-\/usr\/lib\/meshanics-agent\/previous\/bin\/node .*watchdog\.js --once \/var\/lib\/meshanics-agent \$EXIT_STATUS$/m);
    expect((await device.sh('getent passwd meshanics | cut -d: -f6,7')).stdout.trim()).toBe('/var/lib/meshanics-agent:/usr/sbin/nologin');
    expect((await device.sh("dpkg-query --showformat='${Conffiles}' -W meshanics-agent")).stdout).toContain('/etc/meshanics/agent.json');
    // Deny by default: every allowlist empty.
    const conf = JSON.parse((await device.sh('cat /etc/meshanics/agent.json')).stdout);
    expect(Object.values(conf.allowlist).every((list) => Array.isArray(list) && list.length === 0)).toBe(true);
    expect((await device.sh('readlink /usr/lib/meshanics-agent/current')).stdout.trim()).toBe(`versions/${manifest.version}`);
  });

  it('refuses the arm64 package on amd64 (its Architecture field)', async () => {
    const refused = await device.sh(`dpkg -i ${artifact(manifest, '_arm64.deb')}`);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/package architecture \(arm64\) does not match system \(amd64\)/);
    expect((await device.sh("dpkg-query -W -f='${Architecture}' meshanics-agent")).stdout).toBe('amd64');
  });

  it('enrolls with a token, runs as the meshanics user, takes a healthy model and rolls a bad one back', async () => {
    const enrolled = await device.sh(`meshanics-agent enroll --server ${server.enroll} --token ${await token()} --name edge-pkg --ca-fingerprint ${caFingerprint}`);
    expect(enrolled.stderr).toBe('');
    expect(enrolled.code).toBe(0);
    // root's enroll ran as the service user: the key is the service's to read, nobody else's.
    expect((await device.sh('stat -L -c "%U %a" /var/lib/meshanics-agent/identity/current/device.key')).stdout.trim()).toBe('meshanics 600');
    // The vendor plugin, dropped in as a packed npm package and enabled by name.
    const dir = `/usr/lib/meshanics-agent/plugins/${VENDOR}`;
    expect((await device.sh(`mkdir -p ${dir} && tar -xzf ${vendorTgz} -C ${dir} --strip-components=1 --no-same-owner`)).code).toBe(0);
    await device.sh(
      `cat > /etc/meshanics/agent.json <<'EOF'\n${JSON.stringify({ plugins: [...DEFAULTS, VENDOR], allowlist: { writePaths: [], systemdUnits: [], execBinaries: [], httpHosts: [], bindMountPaths: [] } }, null, 2)}\nEOF`,
    );
    const unit = (await device.sh('cat /usr/lib/systemd/system/meshanics-agent.service')).stdout;
    const execStart = /^ExecStart=(.*)$/m.exec(unit)![1];
    agent = device.spawn('packaged-agent', `runuser -u meshanics -- ${execStart}`, '/run/agent.pid');
    const started = await agent.waitForLine((l) => l?.msg === 'agent starting', 30_000);
    expect(started.plugins).toContain(VENDOR);
    await agent.waitForLine((l) => l?.msg === 'registered', 30_000);

    const ready = path.join(work, 'ready');
    await writeFile(ready, 'ok');
    await publishModel(serverDir, work, { name: 'detector', version: '1.0.0' }, Buffer.from('model one'));
    const good = await assign(['--artifact', 'detector@1.0.0', '--probe-type', 'file', '--probe-spec', JSON.stringify({ path: ready })]);
    expect((await waitForAssignment(serverDir, good.assignmentId)).state).toBe('HEALTHY');
    await publishModel(serverDir, work, { name: 'detector', version: '2.0.0' }, Buffer.from('model two'));
    const bad = await assign([
      '--artifact',
      'detector@2.0.0',
      '--probe-type',
      'file',
      '--probe-spec',
      JSON.stringify({ path: path.join(work, 'never') }),
      '--probe-attempts',
      '1',
      '--probe-timeout',
      '1',
    ]);
    expect((await waitForAssignment(serverDir, bad.assignmentId)).state).toBe('ROLLED_BACK');
    const models = await device.sh('find /var/lib/meshanics-agent/artifacts -type f -name "*" | xargs cat 2>/dev/null');
    expect(models.stdout).toContain('model one');
  });

  it('rolls the example vendor plugin out end to end from the package plugins dir', async () => {
    const tree = path.join(work, 'site');
    await mkdir(tree, { recursive: true });
    await writeFile(path.join(tree, 'index.html'), '<h1>from the package</h1>');
    const archive = path.join(work, 'site-1.0.0.tar.gz');
    await run('tar', ['-czf', archive, '-C', tree, '.']);
    await serverCli(serverDir, ['artifact', 'publish', archive, '--name', 'site', '--version', '1.0.0', '--kind', 'directory', '--spec', '{"compression":"gzip"}']);
    const a = await assign(['--artifact', 'site@1.0.0', '--probe-type', 'file', '--probe-spec', JSON.stringify({ path: path.join(work, 'ready') })]);
    expect((await waitForAssignment(serverDir, a.assignmentId)).state).toBe('HEALTHY');
    const served = await device.sh('cat /var/lib/meshanics-agent/artifacts/directory/site/current/index.html');
    expect(served.stdout).toBe('<h1>from the package</h1>');
    await agent!.stopInside();
    agent = undefined;
  });

  it('refuses a vendor plugin built for another core API, naming both versions', async () => {
    const dir = '/usr/lib/meshanics-agent/plugins/@vendor/future';
    await device.sh(
      `mkdir -p ${dir} && printf '%s' '{"name":"@vendor/future","version":"9.0.0","type":"module","exports":"./index.js"}' > ${dir}/package.json && printf '%s\\n' "export default class { name = 'Future'; version = '9.0.0'; coreApi = '^9.0.0'; provides = { artifactKind: 'future' }; specSchema = { type: 'object' }; apply() {} }" > ${dir}/index.js`,
    );
    const refused = await device.sh('runuser -u meshanics -- meshanics-agent run --plugins @vendor/future,@meshanics/probe-file');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('plugin Future 9.0.0 supports core API ^9.0.0, but this agent offers 0.1.0');
    await device.sh(`rm -rf ${dir}`);
  });

  it('exits 2 naming the file, the path and the rule when agent.json does not validate; the unit does not restart on 2', async () => {
    await device.sh(`cp /etc/meshanics/agent.json /tmp/agent.json.good && printf '%s' '{"allowlist":{"writePaths":["relative/dir"]}}' > /etc/meshanics/agent.json`);
    const unit = (await device.sh('cat /usr/lib/systemd/system/meshanics-agent.service')).stdout;
    const bad = await device.sh(`runuser -u meshanics -- ${/^ExecStart=(.*)$/m.exec(unit)![1]}`);
    await device.sh('cp /tmp/agent.json.good /etc/meshanics/agent.json');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/MESH_ERR_CONFIG_INVALID: \/etc\/meshanics\/agent\.json: .*allowlist\/writePaths\/0 must match pattern/);
    expect(unit).toMatch(/^RestartPreventExitStatus=2 3 4$/m);
    expect(unit).toMatch(/^User=meshanics$/m);
  });

  it('passes systemd-analyze verify on the installed unit', async () => {
    // The root has systemd installed but not running (as in an image build): verify is offline.
    const verified = await device.sh('systemd-analyze verify /usr/lib/systemd/system/meshanics-agent.service');
    const version = Number(/systemd (\d+)/.exec((await device.sh('systemd-analyze --version')).stdout)?.[1]);
    // RestartSteps= and RestartMaxDelaySec= (the unit's restart back-off) exist since systemd
    // 254; older systemd (bookworm has 252) ignores them with this warning and restarts every 5 s.
    const newer = /Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\]/;
    const complaints = verified.stderr.split('\n').filter((l) => l.trim() && !(version < 254 && newer.test(l)));
    expect(complaints).toEqual([]);
    expect(verified.code).toBe(0);
  });

  it('dpkg -r removes the program and keeps config and data; dpkg --purge leaves nothing behind', async () => {
    await device.sh(`rm -rf /usr/lib/meshanics-agent/plugins/${VENDOR} /usr/lib/meshanics-agent/plugins/@vendor`);
    const removed = await device.sh('dpkg -r meshanics-agent');
    expect(removed.code).toBe(0);
    const afterRemove = await device.sh(
      'ls -d /usr/bin/meshanics-agent /usr/lib/meshanics-agent /usr/lib/systemd/system/meshanics-agent.service /etc/meshanics/agent.json /var/lib/meshanics-agent 2>/dev/null',
    );
    expect(afterRemove.stdout.split('\n').filter(Boolean)).toEqual(['/etc/meshanics/agent.json', '/var/lib/meshanics-agent']);
    const purged = await device.sh('dpkg --purge meshanics-agent');
    expect(purged.code).toBe(0);
    const { added, unexplained } = await leftovers(device, before);
    // What remains that was not there before the install: nothing of the package's. Listed for
    // the record: what dpkg and shadow's tools keep about any package and any removed user.
    console.info(`after dpkg --purge, new paths (dpkg's and shadow's own records): ${JSON.stringify(added)}`);
    expect(unexplained).toEqual([]);
    expect(added.filter((p) => /meshanics/.test(p))).toEqual([]);
    expect((await device.sh('getent passwd meshanics; getent group meshanics; echo end')).stdout.trim()).toBe('end');
  });
});
