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
import * as zlib from 'node:zlib';
import type * as grpc from '@grpc/grpc-js';
import { DeviceClient, makeCsr, postJson, tempDir } from './helpers.js';

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
  let listening: { grpc: string; artifacts: string; enroll: string };
  const stdoutLines: string[] = [];

  beforeAll(async () => {
    expect(fs.existsSync(CLI), 'run `npx tsc -b server` first').toBe(true);
    dataDir = tempDir();
    serve = spawn(
      process.execPath,
      [CLI, 'serve', '--grpc-listen', '127.0.0.1:0', '--artifact-listen', '127.0.0.1:0', '--enroll-listen', '127.0.0.1:0', '--cert-validity', '90s'],
      {
        env: { ...process.env, MESHANICS_DATA_DIR: dataDir, MESHANICS_HEARTBEAT_INTERVAL: '7' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    listening = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line: ${stdoutLines.join('\n')}`)), 15_000);
      readline.createInterface({ input: serve.stdout! }).on('line', (line) => {
        stdoutLines.push(line);
        const parsed = JSON.parse(line) as { msg: string; grpc: string; artifacts: string; enroll: string };
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

  it('serve prints one JSON "server listening" line with the bound gRPC address, artifact URL and enrollment URL', () => {
    expect(listening.grpc).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(listening.artifacts).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(listening.enroll).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(listening.enroll).not.toBe('https://127.0.0.1:0');
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

  it('publishes into a fleet with --fleet, refuses it to a device of another fleet, and withdraws a version nobody holds', async () => {
    const env = { MESHANICS_DATA_DIR: dataDir };
    await cliJson(['device', 'issue-cert', '--fleet', 'other', '--name', 'edge-9', '--out', path.join(tempDir(), 'creds')], env);
    const artifact = path.join(tempDir(), 'tool.bin');
    fs.writeFileSync(artifact, crypto.randomBytes(1000));
    const pub = await cliJson(['artifact', 'publish', artifact, '--name', 'cli-tool', '--version', '1.0.0', '--kind', 'model', '--fleet', 'cli'], env);
    expect(pub).toMatchObject({ name: 'cli-tool', fleet: 'cli' });
    const refused = await cli(
      ['assign', '--fleet', 'other', '--device', 'edge-9', '--artifact', 'cli-tool@1.0.0', '--probe-type', 'file', '--probe-spec', '{"path":"/run/ready"}'],
      env,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('MESH_ERR_ARTIFACT_FLEET_MISMATCH');
    expect(refused.stderr).toContain('artifact cli-tool@1.0.0 belongs to fleet "cli": devices of fleet "other" may not use it');

    const withdrawn = await cliJson(['artifact', 'withdraw', 'cli-tool@1.0.0'], env);
    expect(withdrawn).toMatchObject({ name: 'cli-tool', version: '1.0.0', fleet: 'cli', withdrawnAt: expect.any(String) });
    const again = await cli(['artifact', 'withdraw', 'cli-tool@1.0.0'], env);
    expect([again.code, again.stderr]).toEqual([1, expect.stringContaining('MESH_ERR_ARTIFACT_NOT_FOUND')]);
    expect((await cli(['artifact', 'withdraw', 'cli-tool'], env)).code).toBe(2);
  });

  it('serializes publishers in separate processes through the database lock', async () => {
    const files = Array.from({ length: 4 }, (_, i) => {
      const f = path.join(tempDir(), `blob${i}`);
      fs.writeFileSync(f, crypto.randomBytes(2048));
      return f;
    });
    const before = JSON.parse(fs.readFileSync(path.join(dataDir, 'tuf/repo/metadata/timestamp.json'), 'utf8')).signed.version as number;
    const results = await Promise.all(files.map((f, i) => cliJson(['artifact', 'publish', f, '--name', 'par', '--version', `0.${i}`, '--kind', 'model', '--data-dir', dataDir])));
    expect(results.map((r) => r.version).sort()).toEqual(['0.0', '0.1', '0.2', '0.3']);
    const timestamp = JSON.parse(fs.readFileSync(path.join(dataDir, 'tuf/repo/metadata/timestamp.json'), 'utf8'));
    expect(timestamp.signed.version).toBe(before + 4);
    const snapshot = JSON.parse(fs.readFileSync(path.join(dataDir, `tuf/repo/metadata/${timestamp.signed.meta['snapshot.json'].version}.snapshot.json`), 'utf8'));
    // Artifacts are signed into the publisher role's hash bins, every one of which snapshot lists.
    const signed = Object.entries(snapshot.signed.meta as Record<string, { version: number }>)
      .filter(([f]) => f.startsWith('publisher-bin-'))
      .flatMap(([f, m]) => Object.keys(JSON.parse(fs.readFileSync(path.join(dataDir, `tuf/repo/metadata/${m.version}.${f}`), 'utf8')).signed.targets));
    for (let i = 0; i < 4; i++) expect(signed).toContain(`par/0.${i}/par`);
  });

  it('mints, lists and revokes enrollment tokens; a minted token enrolls over HTTPS with the 90 s validity serve was given', async () => {
    const env = { MESHANICS_DATA_DIR: dataDir };
    const caPem = fs.readFileSync(path.join(dataDir, 'pki', 'ca.crt'), 'utf8');
    const created = await cliJson(['enroll-token', 'create', '--fleet', 'cli', '--expires-in', '30m', '--uses', '2'], env);
    expect(created).toMatchObject({ fleet: 'cli', uses: 2, deviceName: null });
    expect(String(created.token)).toMatch(/^mesh_enr_/);
    expect(Math.abs(Date.parse(String(created.expiresAt)) - Date.now() - 30 * 60_000)).toBeLessThan(60_000);

    const device = await makeCsr();
    const res = await postJson<Record<string, string>>(listening.enroll, '/enroll/v1/enroll', { token: created.token, name: 'enr-1', csr: device.csrPem }, { caPem });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ fleet: 'cli', name: 'enr-1', deviceApi: listening.grpc, artifactServer: listening.artifacts });
    expect(Math.abs(Date.parse(res.json.notAfter!) - Date.now() - 90_000)).toBeLessThan(10_000);
    expect(Date.parse(res.json.notAfter!) - Date.parse(res.json.notBefore!)).toBe(99_000);

    const listed = (await cliJson(['enroll-token', 'ls', '--fleet', 'cli'], env)).tokens as Record<string, unknown>[];
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: created.id, usesTotal: 2, usesLeft: 1, status: 'active' });
    expect(JSON.stringify(listed)).not.toContain(String(created.token));

    expect(await cliJson(['enroll-token', 'revoke', String(created.id)], env)).toMatchObject({ id: created.id, status: 'revoked', revokedBy: 'operator:cli' });
    const refused = await postJson<Record<string, string>>(
      listening.enroll,
      '/enroll/v1/enroll',
      { token: created.token, name: 'enr-2', csr: (await makeCsr()).csrPem },
      { caPem },
    );
    expect(refused).toMatchObject({ status: 401, json: { code: 'MESH_ERR_ENROLL_TOKEN_REVOKED' } });

    expect((await cli(['enroll-token', 'create', '--expires-in', '1h'], env)).code).toBe(2);
    const badDuration = await cli(['enroll-token', 'create', '--fleet', 'cli', '--expires-in', 'soon'], env);
    expect(badDuration.code).toBe(2);
    expect(badDuration.stderr).toContain('--expires-in must be a duration');
    const unknown = await cli(['enroll-token', 'revoke', 'no-such-token'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('MESH_ERR_ENROLL_TOKEN_NOT_FOUND');
  });

  it('requests logs, lists them, and downloads the gzip a device uploaded, byte for byte', async () => {
    const env = { MESHANICS_DATA_DIR: dataDir };
    const out = path.join(tempDir(), 'creds');
    await cliJson(['device', 'issue-cert', '--fleet', 'cli', '--name', 'logs-1', '--out', out], env);
    const { logRequestId } = await cliJson(['logs', 'request', '--fleet', 'cli', '--device', 'logs-1', '--since', '2025-01-01T00:00:00Z', '--max-bytes', '65536'], env);
    const client = new DeviceClient(listening.grpc, {
      keyPem: fs.readFileSync(path.join(out, 'device.key'), 'utf8'),
      certPem: fs.readFileSync(path.join(out, 'device.crt'), 'utf8'),
      caPem: fs.readFileSync(path.join(out, 'ca.crt'), 'utf8'),
    });
    const bundle = zlib.gzipSync(Buffer.from('journal line\n'.repeat(500)));
    try {
      await client.call('Register', { agentVersion: '1', tags: {}, capabilities: [] });
      const hb = await client.call<{ logRequests: Record<string, unknown>[] }>('Heartbeat', { installed: [] });
      expect(hb.logRequests).toEqual([{ logRequestId, since: '2025-01-01T00:00:00.000Z', until: '', maxBytes: 65536 }]);
      const early = await cli(['logs', 'download', String(logRequestId), '--out', path.join(tempDir(), 'x.gz')], env);
      expect(early.code).toBe(1);
      expect(early.stderr).toContain('MESH_ERR_LOGS_NOT_UPLOADED');
      const uploaded = await new Promise<unknown>((resolve, reject) => {
        const raw = client.raw as unknown as { UploadLogs: (cb: (e: grpc.ServiceError | null, r: unknown) => void) => grpc.ClientWritableStream<unknown> };
        const stream = raw.UploadLogs((err, res) => (err ? reject(err) : resolve(res)));
        stream.write({ logRequestId, data: bundle.subarray(0, 10) });
        stream.write({ data: bundle.subarray(10) });
        stream.end();
      });
      expect(uploaded).toEqual({ bytesReceived: bundle.length });
    } finally {
      client.close();
    }
    const listed = (await cliJson(['logs', 'ls', '--fleet', 'cli', '--device', 'logs-1'], env)).logRequests as Record<string, unknown>[];
    expect(listed).toMatchObject([{ logRequestId, status: 'fulfilled', sizeBytes: bundle.length, since: '2025-01-01T00:00:00.000Z', until: null }]);
    const file = path.join(tempDir(), 'logs.gz');
    expect(await cliJson(['logs', 'download', String(logRequestId), '--out', file], env)).toMatchObject({ logRequestId, out: file, sizeBytes: bundle.length });
    expect(fs.readFileSync(file).equals(bundle)).toBe(true);
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
      [
        ['serve'],
        ['init'],
        ['device', 'issue-cert'],
        ['device', 'decommission'],
        ['artifact', 'publish'],
        ['artifact', 'withdraw'],
        ['assign'],
        ['assignment', 'show'],
        ['enroll-token', 'create'],
        ['enroll-token', 'ls'],
        ['enroll-token', 'revoke'],
        ['logs', 'request'],
        ['logs', 'ls'],
        ['logs', 'download'],
      ].map((c) => cli([...c, '--help'])),
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
