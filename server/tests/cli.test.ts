// The CLI as operators run it: the built binary (server/dist/cli.js, from `tsc -b`), real
// processes, one data dir shared by `serve` and one-shot commands.
import { execFile, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceClient, tempDir } from './helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const execFileP = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function cliJson(args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const r = await cli(args, env);
  if (r.code !== 0) throw new Error(`meshanics-server ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe('meshanics-server CLI', () => {
  let dataDir: string;
  let serve: ReturnType<typeof spawn>;
  let listening: { grpc: string; artifacts: string };
  const stdoutLines: string[] = [];

  beforeAll(async () => {
    expect(fs.existsSync(CLI), 'run `npx tsc -b server` first').toBe(true);
    dataDir = tempDir();
    serve = spawn(process.execPath, [CLI, 'serve', '--grpc-listen', '127.0.0.1:0', '--artifact-listen', '127.0.0.1:0'], {
      env: { ...process.env, MESHANICS_DATA_DIR: dataDir, MESHANICS_HEARTBEAT_INTERVAL: '7' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    listening = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line: ${stdoutLines.join('\n')}`)), 15_000);
      readline.createInterface({ input: serve.stdout! }).on('line', (line) => {
        stdoutLines.push(line);
        const parsed = JSON.parse(line) as { msg: string; grpc: string; artifacts: string };
        if (parsed.msg === 'server listening') {
          clearTimeout(timer);
          resolve(parsed);
        }
      });
      serve.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    });
  });

  afterAll(() => {
    if (serve.exitCode === null) serve.kill('SIGKILL');
  });

  it('serve prints one JSON "server listening" line with the bound gRPC address and artifact URL', () => {
    expect(listening.grpc).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(listening.artifacts).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(listening.grpc).not.toBe('127.0.0.1:0');
    expect(stdoutLines.filter((l) => l.includes('"server listening"'))).toHaveLength(1);
  });

  it('issues a certificate, publishes, assigns and shows an assignment while serve runs on the same data dir', async () => {
    const out = path.join(tempDir(), 'creds');
    const env = { MESHANICS_DATA_DIR: dataDir };
    const cert = await cliJson(['device', 'issue-cert', '--fleet', 'cli', '--name', 'edge-1', '--out', out], env);
    expect(cert.spiffeId).toBe('spiffe://meshanics.local/fleet/cli/device/edge-1');
    expect(fs.statSync(path.join(out, 'device.key')).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'tuf-root.json'), 'utf8')).signed._type).toBe('root');

    const artifact = path.join(tempDir(), 'model.onnx');
    fs.writeFileSync(artifact, crypto.randomBytes(10_000));
    const pub = await cliJson(['artifact', 'publish', artifact, '--name', 'det', '--version', '1.0.0', '--kind', 'model', '--spec', '{"fileName":"det.onnx"}'], env);
    expect(pub).toMatchObject({ name: 'det', version: '1.0.0', targetPath: 'det/1.0.0/det', length: 10_000 });

    const { assignmentId } = await cliJson(
      ['assign', '--fleet', 'cli', '--device', 'edge-1', '--artifact', 'det@1.0.0', '--probe-type', 'file', '--probe-spec', '{"path":"/run/ready"}'],
      env,
    );
    expect(typeof assignmentId).toBe('string');

    const client = new DeviceClient(listening.grpc, {
      keyPem: fs.readFileSync(path.join(out, 'device.key'), 'utf8'),
      certPem: fs.readFileSync(path.join(out, 'device.crt'), 'utf8'),
      caPem: fs.readFileSync(path.join(out, 'ca.crt'), 'utf8'),
    });
    try {
      const reg = await client.call('Register', { agentVersion: '1', tags: {}, capabilities: [] });
      expect(reg).toEqual({ deviceName: 'edge-1', fleet: 'cli', heartbeatIntervalSeconds: 7 });
      const hb = await client.call<{ assignments: { assignmentId: string; probe: Record<string, unknown> }[] }>('Heartbeat', { installed: [] });
      expect(hb.assignments.map((a) => a.assignmentId)).toEqual([assignmentId]);
      expect(hb.assignments[0]!.probe).toMatchObject({ timeoutSeconds: 10, attempts: 3, initialDelaySeconds: 0 });
      await client.call('ReportArtifactStatus', { assignmentId, state: 'DOWNLOADING', sequence: 1, bytesDone: 0, bytesTotal: 10_000 });
    } finally {
      client.close();
    }
    const shown = await cliJson(['assignment', 'show', String(assignmentId), '--data-dir', dataDir]);
    expect(shown).toMatchObject({ state: 'DOWNLOADING', assignment: { device: 'edge-1', artifact: { name: 'det', version: '1.0.0' } } });
    expect((shown.reports as unknown[]).length).toBe(1);
  });

  it('serializes publishers in separate processes through the database lock', async () => {
    const files = Array.from({ length: 4 }, (_, i) => {
      const f = path.join(tempDir(), `blob${i}`);
      fs.writeFileSync(f, crypto.randomBytes(2048));
      return f;
    });
    const before = JSON.parse(fs.readFileSync(path.join(dataDir, 'tuf/repo/metadata/timestamp.json'), 'utf8')).signed.version as number;
    const results = await Promise.all(
      files.map((f, i) => cliJson(['artifact', 'publish', f, '--name', 'par', '--version', `0.${i}`, '--kind', 'model', '--data-dir', dataDir])),
    );
    expect(results.map((r) => r.version).sort()).toEqual(['0.0', '0.1', '0.2', '0.3']);
    const timestamp = JSON.parse(fs.readFileSync(path.join(dataDir, 'tuf/repo/metadata/timestamp.json'), 'utf8'));
    expect(timestamp.signed.version).toBe(before + 4);
    const snapshot = JSON.parse(fs.readFileSync(path.join(dataDir, `tuf/repo/metadata/${timestamp.signed.meta['snapshot.json'].version}.snapshot.json`), 'utf8'));
    const targets = JSON.parse(fs.readFileSync(path.join(dataDir, `tuf/repo/metadata/${snapshot.signed.meta['targets.json'].version}.targets.json`), 'utf8'));
    for (let i = 0; i < 4; i++) expect(Object.keys(targets.signed.targets)).toContain(`par/0.${i}/par`);
  });

  it('exits 2 on usage errors, 1 on runtime errors with the error code, and 0 for --help on every subcommand', async () => {
    const usage = await cli(['assign', '--fleet', 'x', '--data-dir', dataDir]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('missing required options: --device, --artifact, --probe-type, --probe-spec');
    expect((await cli(['artifact', 'publish', '--bogus'])).code).toBe(2);
    expect((await cli(['nope'])).code).toBe(2);
    const runtime = await cli(['assignment', 'show', 'no-such-id', '--data-dir', dataDir]);
    expect(runtime.code).toBe(1);
    expect(runtime.stderr).toContain('MESH_ERR_ASSIGNMENT_NOT_FOUND');
    const badSpec = await cli(['artifact', 'publish', CLI, '--name', 'x', '--version', '1', '--kind', 'model', '--spec', '{"fileName":"a/b"}', '--data-dir', dataDir]);
    expect(badSpec.code).toBe(1);
    expect(badSpec.stderr).toContain('spec/fileName must match pattern');
    const helps = await Promise.all(
      [['serve'], ['init'], ['device', 'issue-cert'], ['device', 'decommission'], ['artifact', 'publish'], ['assign'], ['assignment', 'show']].map(
        (c) => cli([...c, '--help']),
      ),
    );
    for (const h of helps) {
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(/^Usage: meshanics-server /);
    }
  });

  it('shuts down on SIGTERM and exits 0', async () => {
    const exited = new Promise<number | null>((resolve) => serve.once('exit', (code) => resolve(code)));
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
