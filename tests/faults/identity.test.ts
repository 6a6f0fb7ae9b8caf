// Identity attacks against the real server (`meshanics-server serve`, real mTLS): a client
// certificate from another CA, an expired one, one of our CA for another trust domain, one
// of our CA naming no device at all (the server's own), a decommissioned device, a device
// reporting on another device's assignment or uploading for its log request, and request
// bytes that carry fields naming another device (the contract has none: unknown fields are
// ignored, identity comes from the certificate). Everything is refused or ignored, and the
// victim's records do not change.
import * as crypto from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAssignment, decommissionDevice, getAssignment, issueDeviceCertificate, publishArtifact, requestDeviceLogs, type MeshanicsContext } from '@meshanics/server';
import { serverCli, type Child } from '../../scripts/lib/processes.mjs';
import { recordResults } from './fixtures/fault-lib.mjs';
import { CAPABILITIES, FLEET, rawDevice, startFaultServer, type FaultServer, type RawTls } from './fixtures/fault-server.js';
import { decode, encode, grpc, rawClient, rawUnary, rawUpload, unknownField } from './fixtures/raw-grpc.mjs';

let fixture: FaultServer | undefined;
let root: string;
let serverDir: string;
let server: Child;
let ctx: MeshanicsContext;
const rows: Array<{ scenario: string; outcome: string }> = [];

const device = (name: string) => rawDevice(ctx, name);

function register(tls: RawTls, extra: Buffer = Buffer.alloc(0)) {
  const client = rawClient(server.grpc, tls);
  const bytes = Buffer.concat([encode('Register', { agentVersion: '0.1.0', tags: { role: 'test' }, capabilities: CAPABILITIES }), extra]);
  return rawUnary(client, 'Register', bytes).finally(() => client.close());
}

function call(tls: RawTls, method: string, value: Record<string, unknown>, extra: Buffer = Buffer.alloc(0)) {
  const client = rawClient(server.grpc, tls);
  return rawUnary(client, method, Buffer.concat([encode(method, value), extra])).finally(() => client.close());
}

function report(assignmentId: string, sequence: number, state = 'HEALTHY') {
  return { assignmentId, state, sequence, reason: 'forged', bytesDone: 0, bytesTotal: 0, deviceTime: new Date().toISOString() };
}

/** GET on the artifact server with `tls`: "HTTP <status>" or "error <message>" (handshake refused). */
function artifactGet(tls: RawTls, urlPath = '/tuf/metadata/timestamp.json'): Promise<string> {
  return new Promise((resolve) => {
    const req = https.get(new URL(urlPath, server.artifacts), { ca: tls.ca, cert: tls.cert, key: tls.key, agent: false }, (res) => {
      res.resume();
      resolve(`HTTP ${res.statusCode}`);
    });
    req.on('error', (e) => resolve(`error ${e.message}`));
  });
}

/** A key pair and a certificate for `identity` from our device CA, valid in the past only. */
async function certificateFromOurCa(identity: { trustDomain: string; fleet: string; name: string }, validity: { seconds: number; now?: Date }): Promise<RawTls> {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await issueDeviceCertificate(await ctx.deviceCa(), publicKey, identity, validity);
  return { ca: Buffer.from((await ctx.deviceCa()).certPem), cert: Buffer.from(issued.certPem), key: Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' })) };
}

beforeAll(async () => {
  fixture = await startFaultServer('meshanics-identity-');
  ({ root, serverDir, server, ctx } = fixture);
  const file = path.join(root, 'model.bin');
  writeFileSync(file, crypto.randomBytes(4096));
  await publishArtifact(ctx, { file, name: 'detector', version: '1.0.0', kind: 'model', actor: 'test:faults' });
}, 60_000);

afterAll(async () => {
  recordResults('identity', { scenarios: rows });
  await fixture?.close();
});

describe('identity comes from the verified certificate, nothing else', () => {
  it('a client certificate from another CA completes no handshake, on the device API and the artifact server', async () => {
    const ours = await device('legit');
    // Another server's CA issues a certificate for the very same name.
    const other = path.join(root, 'other-server');
    const creds = path.join(root, 'other-creds');
    await serverCli(other, ['device', 'issue-cert', '--fleet', FLEET, '--name', 'legit', '--out', creds]);
    const impostor = { ca: ours.ca, cert: readFileSync(path.join(creds, 'device.crt')), key: readFileSync(path.join(creds, 'device.key')) };
    const res = await register(impostor);
    expect(res.code).toBe(grpc.status.UNAVAILABLE);
    expect(await artifactGet(impostor)).toMatch(/^error /);
    // The genuine one works at the same time.
    expect((await register(ours)).code).toBe(0);
    expect(await artifactGet(ours)).toBe('HTTP 200');
    rows.push({ scenario: 'client certificate from another CA', outcome: `gRPC ${grpc.status[res.code]} (TLS handshake refused); artifact server: handshake refused` });
  });

  it('an expired certificate of our CA completes no handshake', async () => {
    await device('expired');
    const expired = await certificateFromOurCa(
      { trustDomain: ctx.trustDomain, fleet: FLEET, name: 'expired' },
      {
        seconds: 60,
        now: new Date(Date.now() - 3_600_000),
      },
    );
    expect(Date.parse(new crypto.X509Certificate(expired.cert).validTo)).toBeLessThan(Date.now());
    const res = await register(expired);
    expect(res.code).toBe(grpc.status.UNAVAILABLE);
    expect(await artifactGet(expired)).toMatch(/^error /);
    rows.push({
      scenario: 'expired certificate (our CA, expired an hour ago)',
      outcome: `gRPC ${grpc.status[res.code]} (handshake refused); artifact server: ${await artifactGet(expired)}`,
    });
  });

  it("a certificate of our CA for another trust domain, or naming no device (the server's own), is refused as nobody", async () => {
    const foreignDomain = await certificateFromOurCa({ trustDomain: 'evil.example', fleet: FLEET, name: 'legit' }, { seconds: 3600 });
    const res = await register(foreignDomain);
    expect(res).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: 'client certificate carries no device identity of this trust domain' });
    expect(await artifactGet(foreignDomain)).toBe('HTTP 403');
    const serverOwn = {
      ca: Buffer.from((await ctx.deviceCa()).certPem),
      cert: readFileSync(path.join(serverDir, 'pki', 'server.crt')),
      key: readFileSync(path.join(serverDir, 'pki', 'server.key')),
    };
    const own = await register(serverOwn);
    expect([grpc.status.UNAVAILABLE, grpc.status.UNAUTHENTICATED]).toContain(own.code);
    rows.push({ scenario: 'certificate of our CA for another trust domain', outcome: `gRPC ${grpc.status[res.code]}: ${res.details}; artifact server HTTP 403` });
    rows.push({
      scenario: "the server's own certificate (our CA, serverAuth, no device identity) as a client certificate",
      outcome: `gRPC ${grpc.status[own.code]}${own.code === grpc.status.UNAVAILABLE ? ' (TLS handshake refused)' : `: ${own.details}`}`,
    });
  });

  it('a decommissioned device learns it once, then every call and the artifact server refuse it', async () => {
    const gone = await device('gone');
    expect((await register(gone)).code).toBe(0);
    await decommissionDevice(ctx, { fleet: FLEET, name: 'gone', actor: 'test:faults' });
    const first = await call(gone, 'Heartbeat', { installed: [] });
    expect(first.code).toBe(0);
    expect(decode('Heartbeat', first.response).offboarded).toBe(true);
    const refusals = [];
    for (const [method, value] of [
      ['Heartbeat', { installed: [] }],
      ['Register', { agentVersion: '0.1.0' }],
      ['ReportArtifactStatus', report('whatever', 99)],
    ] as const) {
      const res = await call(gone, method, value);
      expect(res, method).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: 'device is decommissioned' });
      refusals.push(method);
    }
    const upload = await rawUpload(rawClient(server.grpc, gone), [encode('UploadLogs', { logRequestId: 'x', data: Buffer.from([0x1f, 0x8b, 0x08]) })]);
    expect(upload).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: 'device is decommissioned' });
    expect(await artifactGet(gone)).toBe('HTTP 403');
    rows.push({
      scenario: 'decommissioned device',
      outcome: 'first heartbeat: offboarded=true; then Register/Heartbeat/ReportArtifactStatus/UploadLogs PERMISSION_DENIED "device is decommissioned"; artifact server HTTP 403',
    });
  });

  it("a device cannot report on another device's assignment, nor upload for its log request, nor probe which ids exist", async () => {
    const victim = await device('victim');
    const attacker = await device('attacker');
    expect((await register(victim)).code).toBe(0);
    expect((await register(attacker)).code).toBe(0);
    const { assignmentId } = await createAssignment(ctx, {
      fleet: FLEET,
      device: 'victim',
      artifact: 'detector',
      version: '1.0.0',
      probe: { type: 'file', spec: { path: '/tmp/ready' } },
      actor: 'test:faults',
    });
    const foreign = await call(attacker, 'ReportArtifactStatus', report(assignmentId, 1));
    const unknown = await call(attacker, 'ReportArtifactStatus', report(crypto.randomUUID(), 2));
    expect(foreign).toMatchObject({ code: grpc.status.NOT_FOUND, details: 'no such assignment for this device' });
    // Same answer for an id that does not exist: no probing.
    expect(unknown).toMatchObject({ code: foreign.code, details: foreign.details });
    const view = await getAssignment(ctx, assignmentId);
    expect(view.state).toBe('PENDING');
    expect(view.reports).toEqual([]);
    // The victim's own report still goes through (the attacker did not burn its sequence).
    const own = await call(victim, 'ReportArtifactStatus', report(assignmentId, 1, 'DOWNLOADING'));
    expect(own.code).toBe(0);
    expect(decode('ReportArtifactStatus', own.response).accepted).toBe(true);

    const { logRequestId } = await requestDeviceLogs(ctx, { fleet: FLEET, device: 'victim', maxBytes: 65536, actor: 'test:faults' });
    const stolen = await rawUpload(rawClient(server.grpc, attacker), [encode('UploadLogs', { logRequestId, data: Buffer.from([0x1f, 0x8b, 0x08, 0, 0]) })]);
    expect(stolen).toMatchObject({ code: grpc.status.NOT_FOUND, details: 'no such log request for this device' });
    rows.push({
      scenario: "report on another device's assignment id (and on a random id)",
      outcome: `${grpc.status[foreign.code]} "${foreign.details}" for both; the assignment shows no report`,
    });
    rows.push({ scenario: "upload for another device's log request", outcome: `${grpc.status[stolen.code]} "${stolen.details}"` });
  });

  it('request bytes with fields naming another device are ignored: the certificate decides', async () => {
    const victim = await device('victim-2');
    const attacker = await device('attacker-2');
    expect((await register(victim)).code).toBe(0);
    const before = (await ctx.store.getDeviceBySpiffeId(victim.spiffeId))!;
    // Unknown fields a naive server might read: a device name, a SPIFFE id, a fleet.
    const naming = Buffer.concat([
      unknownField(15, 'victim-2'),
      unknownField(16, victim.spiffeId),
      unknownField(17, FLEET),
      unknownField(1000, JSON.stringify({ device: 'victim-2', deviceId: before.id })),
    ]);
    const reg = await register(attacker, naming);
    expect(reg.code).toBe(0);
    expect(decode('Register', reg.response)).toMatchObject({ deviceName: 'attacker-2', fleet: FLEET });
    const hb = await call(attacker, 'Heartbeat', { installed: [{ name: 'detector', kind: 'model', version: '6.6.6', sha256: 'a'.repeat(64), state: 'HEALTHY' }] }, naming);
    expect(hb.code).toBe(0);
    const after = (await ctx.store.getDeviceBySpiffeId(victim.spiffeId))!;
    // The victim's record is untouched; the attacker's own record took the heartbeat.
    expect(after.registeredAt).toBe(before.registeredAt);
    expect(after.lastSeenAt ?? null).toBe(before.lastSeenAt ?? null);
    expect(JSON.stringify(after)).toBe(JSON.stringify(before));
    expect((await ctx.store.getDeviceBySpiffeId(attacker.spiffeId))?.registeredAt).toBeTruthy();
    rows.push({
      scenario: 'request bytes with unknown fields naming another device (Register, Heartbeat)',
      outcome: "ignored: Register answers with the certificate's own name; the named device's record is unchanged",
    });
  });
});
