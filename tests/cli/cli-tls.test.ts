// The operator surface over HTTPS (issue 25), with real processes: `meshanics-server serve`
// with the operator's certificate (MESHANICS_API_TLS_CERT/KEY), the `meshanics` CLI trusting
// the operator's CA (--ca-file, MESHANICS_CA_FILE) and refusing the server without it; SIGHUP
// swaps the certificate for new connections while an open event stream keeps going; plain
// HTTP off loopback is refused with exit 2 before anything is bound, and allowed with a
// warning at every start by --api-insecure-http.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_CLI, serveArgs, spawnNode, type Child } from '../../scripts/lib/processes.mjs';
import { createApiKey, meshanics, SimDevice } from './harness.js';
import { operatorCa, serverCertificate, type IssuedServerCert, type OperatorCa } from './operator-pki.js';

let root: string;
let dataDir: string;
let ca: OperatorCa;
let first: IssuedServerCert;
let second: IssuedServerCert;
let caFile: string;
let certFile: string;
let keyFile: string;
let server: Child;
let api: string;
let adminKey: string;
let sims: SimDevice[] = [];

function serve(dir: string, extraArgs: string[], env: Record<string, string> = {}): Child {
  return spawnNode('server', SERVER_CLI, serveArgs(dir, extraArgs), env);
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-cli-tls-'));
  dataDir = path.join(root, 'server');
  ca = await operatorCa();
  [first, second] = await Promise.all([serverCertificate(ca, 'meshanics-api-first'), serverCertificate(ca, 'meshanics-api-second')]);
  caFile = path.join(root, 'operator-ca.pem');
  certFile = path.join(root, 'api.crt');
  keyFile = path.join(root, 'api.key');
  await Promise.all([writeFile(caFile, ca.certPem), writeFile(certFile, first.certPem), writeFile(keyFile, first.keyPem, { mode: 0o600 })]);
  server = serve(dataDir, ['--api-listen', '127.0.0.1:0', '--heartbeat-interval', '1'], { MESHANICS_API_TLS_CERT: certFile, MESHANICS_API_TLS_KEY: keyFile });
  const listening = (await server.waitForLine((l: { msg?: string }) => l?.msg === 'server listening')) as { api: string; grpc: string };
  api = listening.api;
  Object.assign(server, { grpc: listening.grpc });
  adminKey = await createApiKey(dataDir, 'admin', { approve: true });
  sims = await SimDevice.provision({ child: server, dataDir, api }, path.join(root, 'certs'), 'lab', ['tls-1', 'tls-2']);
}, 60_000);

afterAll(async () => {
  await Promise.all(sims.map((s) => s.stop()));
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

/** The certificate a fresh TLS connection to the API is served, verified against the operator CA. */
function servedCertificate(): Promise<tls.PeerCertificate> {
  const { port } = new URL(api);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), servername: 'localhost', ca: ca.certPem }, () => {
      resolve(socket.getPeerCertificate());
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('the REST API over HTTPS with the operator certificate', () => {
  it('announces https and serves the operator certificate with HSTS', async () => {
    expect(api).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(server.lines.some((l) => l.includes('"msg":"REST API serves HTTPS"') && l.includes('meshanics-api-first'))).toBe(true);
    expect((await servedCertificate()).serialNumber).toBe(first.serialNumber);
    const health = await new Promise<import('node:http').IncomingMessage>((resolve, reject) =>
      https.get(`${api}/healthz`, { agent: false, ca: ca.certPem, servername: 'localhost' }, resolve).on('error', reject),
    );
    health.resume();
    expect(health.statusCode).toBe(200);
    expect(health.headers['strict-transport-security']).toBe('max-age=31536000');
  });

  it('the CLI works over https trusting the operator CA (--ca-file or MESHANICS_CA_FILE), and refuses the server without it', async () => {
    const env = { MESHANICS_API_URL: api, MESHANICS_API_KEY: adminKey };
    const untrusted = await meshanics(['whoami', '--json'], env);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/cannot reach https:\/\/127\.0\.0\.1:\d+: (SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/);
    const viaFlag = await meshanics(['--ca-file', caFile, 'whoami', '--json'], env);
    expect(viaFlag.code, viaFlag.stderr).toBe(0);
    expect(JSON.parse(viaFlag.stdout)).toMatchObject({ name: 'admin', fleet: '*' });
    const viaEnv = await meshanics(['devices', 'ls', '--fleet', 'lab', '--json'], { ...env, MESHANICS_CA_FILE: caFile });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    expect(
      JSON.parse(viaEnv.stdout)
        .items.map((d: { name: string }) => d.name)
        .sort(),
    ).toEqual(['tls-1', 'tls-2']);
    const missing = await meshanics(['whoami'], { ...env, MESHANICS_CA_FILE: path.join(root, 'nope.pem') });
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining('cannot read the CA file')]);

    // login keeps the CA with the server URL: later commands need neither flag nor env.
    const config = path.join(root, 'cli-config.json');
    const login = await meshanics(['login', '--server', api, '--ca-file', caFile], { MESHANICS_CONFIG: config }, `${adminKey}\n`);
    expect(login.code, login.stderr).toBe(0);
    const after = await meshanics(['whoami', '--json'], { MESHANICS_CONFIG: config });
    expect(after.code, after.stderr).toBe(0);
  });

  it('SIGHUP: new connections get the new certificate, an open event stream keeps going', async () => {
    const env = { MESHANICS_API_URL: api, MESHANICS_API_KEY: adminKey, MESHANICS_CA_FILE: caFile };
    // Everything through the CLI over https, the upload too.
    const file = path.join(root, 'model.bin');
    await writeFile(file, randomBytes(64 * 1024));
    const published = await meshanics(['artifacts', 'publish', file, '--name', 'tls-model', '--version', '1.0.0', '--kind', 'model', '--json'], env);
    expect(published.code, published.stderr).toBe(0);
    const created = await meshanics(
      [
        'rollouts',
        'create',
        '--fleet',
        'lab',
        '--artifact',
        'tls-model@1.0.0',
        '--group',
        'tls',
        '--devices',
        'tls-1,tls-2',
        '--probe-type',
        'file',
        '--probe-spec',
        '{"path":"/run/ready"}',
        '--json',
      ],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).id as string;

    // An event stream opened on the first certificate.
    const events: Array<{ status: string }> = [];
    let buffer = '';
    let streamClosed = false;
    // agent: false: a full handshake (a resumed TLS session shows no peer certificate).
    const request = https.get(`${api}/api/v1/rollouts/${id}/events`, { agent: false, ca: ca.certPem, servername: 'localhost', headers: { authorization: `Bearer ${adminKey}` } });
    const response = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      request.on('response', resolve);
      request.on('error', reject);
    });
    expect(response.statusCode).toBe(200);
    const streamCert = (response.socket as tls.TLSSocket).getPeerCertificate();
    expect(streamCert.serialNumber).toBe(first.serialNumber);
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      buffer += chunk;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const data = /^data: (.*)$/m.exec(buffer.slice(0, end))?.[1];
        if (/^event: rollout$/m.test(buffer.slice(0, end)) && data) events.push(JSON.parse(data));
        buffer = buffer.slice(end + 2);
      }
    });
    response.on('close', () => (streamClosed = true));
    await expect.poll(() => events.length).toBeGreaterThan(0);

    // Rotate: new files, SIGHUP.
    await Promise.all([writeFile(certFile, second.certPem), writeFile(keyFile, second.keyPem)]);
    server.proc.kill('SIGHUP');
    const reloaded = (await server.waitForLine((l: { msg?: string }) => l?.msg === 'REST API certificate reloaded')) as { subject: string };
    expect(reloaded.subject).toContain('meshanics-api-second');
    expect((await servedCertificate()).serialNumber).toBe(second.serialNumber);
    expect(server.proc.exitCode).toBeNull();
    // The CLI connects anew and sees the new certificate (same CA): it works.
    expect((await meshanics(['whoami'], env)).code).toBe(0);

    // The stream from before the rotation still delivers: abort the rollout and watch it arrive.
    const aborted = await meshanics(['rollouts', 'abort', id, '--json'], env);
    expect(aborted.code, aborted.stderr).toBe(0);
    await expect.poll(() => events.at(-1)?.status, { timeout: 10_000 }).toBe('aborted');
    expect(streamClosed).toBe(false);
    expect((response.socket as tls.TLSSocket).getPeerCertificate().serialNumber).toBe(first.serialNumber);
    request.destroy();

    // A broken pair on the next SIGHUP keeps the current certificate.
    await writeFile(keyFile, first.keyPem);
    server.proc.kill('SIGHUP');
    const failed = (await server.waitForLine((l: { msg?: string }) => l?.msg === 'REST API certificate reload failed: still serving the previous one')) as { level: string };
    expect(failed.level).toBe('error');
    expect((await servedCertificate()).serialNumber).toBe(second.serialNumber);
  });
});

describe('plain HTTP', () => {
  it('is refused on an address that is not loopback (exit 2, before binding), with the remedy in the message', async () => {
    // 192.0.2.10 (TEST-NET-1, RFC 5737) is no address of this machine: the refusal must come
    // before any bind, which would fail differently (exit 1).
    const dir = path.join(root, 'refused');
    await mkdir(dir);
    const child = serve(dir, ['--api-listen', '192.0.2.10:0']);
    const { code } = await child.exit;
    expect(code).toBe(2);
    const stderr = child.lines.join('\n');
    expect(stderr).toContain('refusing to serve the REST API over plain HTTP on 192.0.2.10, which is not a loopback address');
    expect(stderr).toContain('--api-tls-cert');
    expect(stderr).toContain('--api-insecure-http');
    // The same with the certificate flags half given.
    const half = serve(dir, ['--api-listen', '127.0.0.1:0', '--api-tls-cert', certFile]);
    expect((await half.exit).code).toBe(2);
    expect(half.lines.join('\n')).toContain('give both --api-tls-cert and --api-tls-key, or neither');
  });

  it('--api-insecure-http allows it and logs a warning at every start', async () => {
    const dir = path.join(root, 'insecure');
    for (let start = 0; start < 2; start++) {
      const child = serve(dir, ['--api-listen', '127.0.0.1:0', '--api-insecure-http']);
      const warning = (await child.waitForLine((l: { msg?: string }) => typeof l?.msg === 'string' && l.msg.startsWith('the REST API serves plain HTTP'))) as { level: string };
      expect(warning.level).toBe('warn');
      const listening = (await child.waitForLine((l: { msg?: string }) => l?.msg === 'server listening')) as { api: string };
      expect(listening.api).toMatch(/^http:\/\//);
      await child.stop();
    }
  });
});
