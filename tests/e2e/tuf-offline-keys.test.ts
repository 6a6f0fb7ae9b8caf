// The offline-key ceremony end to end with real processes: a running `serve` and a real agent
// enrolled while every TUF key was online (pinned to root v1); the root and targets keys are
// then created and used in a separate directory standing in for the offline machine, the
// signed metadata is imported next to the running server, and the same agent follows root
// v1 -> v2 (TUF spec 5.3) and installs an artifact found through the publisher delegation
// (spec 5.6.7). A publisher version signed by any other key is refused.
import * as crypto from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, MetadataKind, Signature } from '@tufjs/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs, publishModel, startServerWithAgent } from './helpers/steps.js';

let root: string;
let serverDir: string;
let offlineDir: string;
let certDir: string;
let agentDir: string;
let server: Child;
let agent: Child;

const metadataDir = () => path.join(serverDir, 'tuf', 'repo', 'metadata');
const keysDir = () => path.join(serverDir, 'tuf', 'keys');
const live = () => path.join(agentDir, 'artifacts', 'model', 'detector', 'model');

function publish(version: string, bytes: Buffer) {
  return publishModel(serverDir, root, { name: 'detector', version }, bytes);
}

async function installed(version: string) {
  const ready = path.join(root, 'ready', version);
  await writeFile(ready, 'ok');
  const { assignmentId } = await serverCli(serverDir, assignArgs({ fleet: 'e2e', device: 'edge-1', artifact: `detector@${version}`, readyFile: ready }));
  return waitForAssignment(serverDir, assignmentId as string);
}

function trustedRootVersion(): number {
  return (JSON.parse(readFileSync(path.join(agentDir, 'tuf', 'root.json'), 'utf8')) as { signed: { version: number } }).signed.version;
}

function signWith(md: Metadata<never>, privateKey: crypto.KeyObject, keyID: string): Buffer {
  md.sign((bytes) => new Signature({ keyID, sig: crypto.sign(null, bytes, privateKey).toString('hex') }), false);
  return Buffer.from(canonicalize(md.toJSON()));
}

function keyIdOf(privateKey: crypto.KeyObject): string {
  const hex = Buffer.from(crypto.createPublicKey(privateKey).export({ format: 'jwk' }).x!, 'base64url').toString('hex');
  return crypto
    .createHash('sha256')
    .update(canonicalize({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: hex } }))
    .digest('hex');
}

const metaOf = (version: number, bytes: Buffer) => ({ version, length: bytes.length, hashes: { sha256: crypto.createHash('sha256').update(bytes).digest('hex') } });

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-tuf-offline-'));
  serverDir = path.join(root, 'server');
  offlineDir = path.join(root, 'offline-machine');
  certDir = path.join(root, 'creds');
  agentDir = path.join(root, 'agent');
  await mkdir(path.join(root, 'ready'), { recursive: true });
  await mkdir(path.join(offlineDir, 'transfer'), { recursive: true });
  ({ server, agent } = await startServerWithAgent({ serverDir, certDir, agentDir }));
});

afterAll(async () => {
  await agent?.stop();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('TUF root and targets keys moved offline under a running server and agent', () => {
  it('embedded default: warns at start that root and targets keys are online; the agent pinned root v1 installs 1.0.0', async () => {
    const warning = await server.waitForLine((l) => typeof l?.msg === 'string' && l.msg.startsWith('embedded default: TUF root and targets keys are kept online'));
    expect(warning.level).toBe('warn');
    expect((JSON.parse(await readFile(path.join(certDir, 'tuf-root.json'), 'utf8')) as { signed: { version: number } }).signed.version).toBe(1);
    await publish('1.0.0', crypto.randomBytes(64 * 1024));
    const view = await installed('1.0.0');
    expect(view.state).toBe('HEALTHY');
    expect(trustedRootVersion()).toBe(1);
  });

  it('runs keygen, sign-root and sign-targets offline, imports next to the running server, and retires the online root/targets keys', async () => {
    const keys = path.join(offlineDir, 'keys');
    const rootKey = await serverCli(serverDir, ['tuf', 'keygen', '--role', 'root', '--out', keys]);
    const targetsKey = await serverCli(serverDir, ['tuf', 'keygen', '--role', 'targets', '--out', keys]);
    expect((await stat(rootKey.privateKeyFile)).mode & 0o777).toBe(0o600);
    expect((await stat(targetsKey.privateKeyFile)).mode & 0o777).toBe(0o600);
    // Server side: the public keys of the online roles travel to the offline machine as a file.
    const onlineKeys = path.join(offlineDir, 'transfer', 'online-keys.json');
    await serverCli(serverDir, ['tuf', 'online-keys', '--out', onlineKeys]);
    const newRoot = path.join(offlineDir, 'transfer', 'root.json');
    const newTargets = path.join(offlineDir, 'transfer', 'targets.json');
    const signedRoot = await serverCli(serverDir, ['tuf', 'sign-root', '--keys', keys, '--online-keys', onlineKeys, '--out', newRoot]);
    expect(signedRoot).toMatchObject({ version: 2, keyids: { root: [rootKey.keyid], targets: [targetsKey.keyid] }, signedBy: [rootKey.keyid] });
    const signedTargets = await serverCli(serverDir, ['tuf', 'sign-targets', '--keys', keys, '--online-keys', onlineKeys, '--root', newRoot, '--out', newTargets]);
    expect(signedTargets.delegatedPaths).toEqual(['*/*/*']);

    const imported = await serverCli(serverDir, ['tuf', 'import', '--root', newRoot, '--targets', newTargets]);
    // The first switch: the new root also needs the old (online) root key's signature (spec 5.3.4).
    expect(imported.root).toMatchObject({ version: 2, addedCurrentRootSignature: true });
    expect(imported.removedOnlineKeys).toEqual(['root', 'targets']);
    expect(existsSync(path.join(keysDir(), 'root.pem'))).toBe(false);
    expect(existsSync(path.join(keysDir(), 'targets.pem'))).toBe(false);
    expect(existsSync(path.join(metadataDir(), '2.root.json'))).toBe(true);
    const status = await serverCli(serverDir, ['tuf', 'status']);
    expect(status.keys).toEqual({ online: ['snapshot', 'timestamp', 'publisher'], offline: ['root', 'targets'] });
    const auditFile = path.join(root, 'audit.ndjson');
    const audit = await serverCli(serverDir, ['audit', 'export', '--out', auditFile]);
    expect(audit.chain.verified).toBe(true);
    const events = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action?: string; subject?: string; details?: Record<string, unknown> });
    const tufEvents = events.filter((e) => e.action?.startsWith('tuf.'));
    expect(tufEvents.map((e) => [e.action, e.subject])).toEqual([
      ['tuf.root_imported', 'tuf:root@2'],
      ['tuf.targets_imported', 'tuf:targets@2'],
      ['tuf.online_keys_removed', 'tuf:keys'],
    ]);
    expect(tufEvents[0]!.details).toMatchObject({ version: 2, addedCurrentRootSignature: true, keyids: { root: [rootKey.keyid], targets: [targetsKey.keyid] } });
  });

  it('the running agent, enrolled before the switch, follows root v1 -> v2 and installs 2.0.0 from the delegated publisher role', async () => {
    const bytes = crypto.randomBytes(128 * 1024);
    await publish('2.0.0', bytes);
    const publisher = JSON.parse(readFileSync(path.join(metadataDir(), 'timestamp.json'), 'utf8')) as { signed: { meta: Record<string, { version: number }> } };
    const snapshotVersion = publisher.signed.meta['snapshot.json']!.version;
    const snapshot = JSON.parse(readFileSync(path.join(metadataDir(), `${snapshotVersion}.snapshot.json`), 'utf8')) as { signed: { meta: Record<string, { version: number }> } };
    const publisherMd = Metadata.fromJSON(
      MetadataKind.Targets,
      JSON.parse(readFileSync(path.join(metadataDir(), `${snapshot.signed.meta['publisher.json']!.version}.publisher.json`), 'utf8')),
    );
    // The publisher role delegates to hash bins (succinct roles); the target is in its bin.
    const binName = publisherMd.signed.delegations!.succinctRoles!.getRoleForTarget('detector/2.0.0/detector');
    const bin = JSON.parse(readFileSync(path.join(metadataDir(), `${snapshot.signed.meta[`${binName}.json`]!.version}.${binName}.json`), 'utf8')) as {
      signed: { targets: Record<string, unknown> };
    };
    expect(Object.keys(bin.signed.targets)).toContain('detector/2.0.0/detector');
    const view = await installed('2.0.0');
    expect(view.state, view.reason).toBe('HEALTHY');
    expect(await readFile(live())).toEqual(bytes);
    expect(trustedRootVersion()).toBe(2);
  });

  it('refuses a publisher version signed by a key other than the delegated publisher key, even with genuine snapshot and timestamp', async () => {
    const p = await publish('3.0.0', crypto.randomBytes(32 * 1024));
    // The attacker holds the online snapshot and timestamp keys but not the publisher key.
    const ts = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(readFileSync(path.join(metadataDir(), 'timestamp.json'), 'utf8')));
    const snapVersion = ts.signed.snapshotMeta.version;
    const snap = JSON.parse(readFileSync(path.join(metadataDir(), `${snapVersion}.snapshot.json`), 'utf8'));
    const pubVersion = snap.signed.meta['publisher.json'].version as number;
    const pub = JSON.parse(readFileSync(path.join(metadataDir(), `${pubVersion}.publisher.json`), 'utf8'));
    const attacker = crypto.generateKeyPairSync('ed25519').privateKey;
    pub.signed.version = pubVersion + 1;
    const pubBytes = signWith(Metadata.fromJSON(MetadataKind.Targets, pub) as never, attacker, keyIdOf(attacker));
    const snapshotKey = crypto.createPrivateKey(readFileSync(path.join(keysDir(), 'snapshot.pem')));
    const timestampKey = crypto.createPrivateKey(readFileSync(path.join(keysDir(), 'timestamp.pem')));
    snap.signed.version = snapVersion + 1;
    snap.signed.meta['publisher.json'] = metaOf(pubVersion + 1, pubBytes);
    const snapBytes = signWith(Metadata.fromJSON(MetadataKind.Snapshot, snap) as never, snapshotKey, keyIdOf(snapshotKey));
    const genuineTimestamp = readFileSync(path.join(metadataDir(), 'timestamp.json'));
    const tsJson = JSON.parse(genuineTimestamp.toString('utf8'));
    tsJson.signed.version += 1;
    tsJson.signed.meta['snapshot.json'] = metaOf(snapVersion + 1, snapBytes);
    const tsBytes = signWith(Metadata.fromJSON(MetadataKind.Timestamp, tsJson) as never, timestampKey, keyIdOf(timestampKey));
    await writeFile(path.join(metadataDir(), `${pubVersion + 1}.publisher.json`), pubBytes);
    await writeFile(path.join(metadataDir(), `${snapVersion + 1}.snapshot.json`), snapBytes);
    await writeFile(path.join(metadataDir(), 'timestamp.json'), tsBytes);

    const view = await installed(p.version);
    expect(view.state).toBe('FAILED');
    expect(view.reason).toMatch(
      /^MESH_ERR_TUF_DELEGATION: delegated TUF metadata for "[^"]+" failed verification: Unable to load targets error Error: publisher was signed by 0\/1 keys$/,
    );
    expect(view.reports.map((r: { state: string }) => r.state)).not.toContain('APPLYING');
    expect(trustedRootVersion()).toBe(2);
    // The server itself refuses to build on the forged chain; put the genuine one back.
    await writeFile(path.join(metadataDir(), 'timestamp.json'), genuineTimestamp);
  });

  it('after a restart with root and targets offline, serve no longer warns that they are online', async () => {
    await agent.stop();
    await server.stop();
    server = await startServer(serverDir);
    const info = await server.waitForLine((l) => l?.msg === 'TUF root and targets keys are offline');
    expect(info.offline).toEqual(['root', 'targets']);
    expect(server.lines.some((l) => l.includes('embedded default: TUF'))).toBe(false);
  });
});
