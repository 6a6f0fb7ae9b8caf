// Online key rotation in-process (issue 29, server/src/tuf/online-rotation.ts): staging keeps
// the new keys pending and unused, `tuf import` refuses metadata naming keys that are neither
// active nor pending or mixing the two, activation replaces all three keys in one commit that a
// client pinned to root v1 follows, and a crash between the commit and the key renames is
// finished by the next open. The fleet-level story is tests/e2e/tuf-online-rotation.test.ts.
import * as crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import fsModule from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { performance } from 'node:perf_hooks';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Metadata, MetadataKind } from '@tufjs/models';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import type { MeshanicsContext } from '../src/config/data-dir.js';
import type { DeviceCredentials } from '../src/fleet/devices.js';
import { isMeshError } from '../src/errors.js';
import { loadKeyFile } from '../src/tuf/keys.js';
import { keygen, signRoot, signTargets } from '../src/tuf/offline.js';
import { startTestServer, tempDir, type TestServer } from './helpers.js';
import { artifactFile, clientPinnedToV1, expectRefusedUnchanged, importSignedFiles, offlineCeremony } from './helpers/tuf.js';

const SERVER_CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

let t: TestServer;
let device: DeviceCredentials;
/** A second handle on the data dir, as `meshanics-server tuf ...` has next to `serve`. */
let cli: MeshanicsContext;
let offline: string;
let transfer: string;
let n = 0;

const keysDir = () => t.ctx.layout.tufKeysDir;
const metadataDir = () => t.ctx.layout.tufMetadataDir;
const keyIdIn = (file: string) => loadKeyFile(file, 'snapshot').key.keyID;

async function expectRefused(code: string, message: RegExp, fn: () => unknown): Promise<void> {
  const caught = await expectRefusedUnchanged(t.ctx, isMeshError, code, fn);
  expect(caught.message).toMatch(message);
}

/** Root and targets N+1 signed offline from an export (the single-key ceremony of today). */
function signFrom(exportFile: string): { root: string; targets: string } {
  n++;
  const root = path.join(transfer, `root-${n}.json`);
  const targets = path.join(transfer, `targets-${n}.json`);
  signRoot({ keysDir: offline, onlineKeysFile: exportFile, out: root, previousRootKeyFile: path.join(offline, 'root.pem') });
  signTargets({ keysDir: offline, onlineKeysFile: exportFile, rootFile: root, out: targets });
  return { root, targets };
}

const importFiles = (files: { root?: string; targets?: string }) => importSignedFiles(cli, files);

async function activeExport(): Promise<string> {
  const file = path.join(transfer, `online-keys-${++n}.json`);
  fs.writeFileSync(file, JSON.stringify(await cli.tuf.onlineKeys()));
  return file;
}

async function stage(): Promise<{ file: string; keyids: Record<string, string> }> {
  const { exported, pending } = await cli.tuf.stageOnlineRotation();
  const file = path.join(transfer, `rotation-${++n}.json`);
  fs.writeFileSync(file, JSON.stringify(exported));
  return { file, keyids: pending.keyids };
}

/** An export from `a` with the keys of `b` for the roles named: a mix the import must refuse. */
function mixedExport(a: string, b: string, roles: string[]): string {
  const out = JSON.parse(fs.readFileSync(a, 'utf8'));
  const other = JSON.parse(fs.readFileSync(b, 'utf8'));
  for (const r of roles) out.keys[r] = other.keys[r];
  const file = path.join(transfer, `mixed-${++n}.json`);
  fs.writeFileSync(file, JSON.stringify(out));
  return file;
}

function signerOf(file: string): string[] {
  const md = JSON.parse(fs.readFileSync(path.join(metadataDir(), file), 'utf8')) as { signatures: Array<{ keyid: string }> };
  return md.signatures.map((s) => s.keyid);
}

function liveSnapshotFile(): string {
  const ts = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(fs.readFileSync(path.join(metadataDir(), 'timestamp.json'), 'utf8')));
  return `${ts.signed.snapshotMeta.version}.snapshot.json`;
}

/** Every key id held in a .pem under the keys dir. */
function keyidsOnDisk(): string[] {
  return fs
    .readdirSync(keysDir())
    .filter((f) => f.endsWith('.pem'))
    .map((f) => keyIdIn(path.join(keysDir(), f)));
}

beforeAll(async () => {
  t = await startTestServer();
  ({ device, cli, offline, transfer } = await offlineCeremony(t, 'rotate-1'));
  // Root and targets offline first (the ceremony of tests/tuf-offline-keys.test.ts): the state a rotation starts from.
  const { root, targets } = signFrom(await activeExport());
  await importFiles({ root, targets });
});
afterAll(async () => {
  await cli?.close();
  await t.close();
});

describe('tuf rotate-online --stage', () => {
  it('creates three pending keys (0600) and keeps signing with the active ones; a second stage is refused', async () => {
    const active = await cli.tuf.onlineKeys();
    const { keyids } = await stage();
    for (const role of ['snapshot', 'timestamp', 'publisher']) {
      const file = path.join(keysDir(), `pending-${role}.pem`);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(keyIdIn(file)).toBe(keyids[role]);
      expect(keyids[role]).not.toBe(active.keys[role as 'snapshot'].keyid);
    }
    expect(cli.tuf.pendingOnlineRotation()).toMatchObject({ keyids, replaces: { snapshot: active.keys.snapshot.keyid } });
    // Pending keys are not used: a publish is signed by the active keys, and online-keys still exports them.
    await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(512)), name: 'detector', version: '1.1.0', kind: 'model' });
    expect(signerOf('timestamp.json')).toEqual([active.keys.timestamp.keyid]);
    expect(signerOf(liveSnapshotFile())).toEqual([active.keys.snapshot.keyid]);
    expect((await cli.tuf.onlineKeys()).keys.snapshot.keyid).toBe(active.keys.snapshot.keyid);
    await expectRefused('MESH_ERR_TUF_ROTATION_PENDING', /is pending .*`tuf rotate-online --abandon`/, () => cli.tuf.stageOnlineRotation());
    // Abandoned: the pending keys are gone, the next stage starts clean.
    expect((await cli.tuf.abandonOnlineRotation()).keyids).toEqual(keyids);
    expect(fs.readdirSync(keysDir()).filter((f) => f.startsWith('pending'))).toEqual([]);
    await expectRefused('MESH_ERR_TUF_ROTATION_NONE', /no online-key rotation is staged/, () => cli.tuf.abandonOnlineRotation());
  });
});

describe('tuf import of a rotation refuses, changing nothing', () => {
  let rotation: string;
  let active: string;
  beforeAll(async () => {
    active = await activeExport();
    rotation = (await stage()).file;
  });

  it('online keys that are neither the active nor the pending ones', async () => {
    const strangers = path.join(tempDir(), 'keys');
    keygen('root', strangers);
    const file = JSON.parse(fs.readFileSync(rotation, 'utf8'));
    file.keys.timestamp = JSON.parse(fs.readFileSync(path.join(strangers, 'root.pub.json'), 'utf8'));
    const stranger = path.join(transfer, 'stranger.json');
    fs.writeFileSync(stranger, JSON.stringify(file));
    const { root, targets } = signFrom(stranger);
    await expectRefused(
      'MESH_ERR_TUF_IMPORT_ONLINE_KEYS',
      /^root v3 must list this server's timestamp key \w+ with threshold 1, or the pending timestamp key of a staged rotation \(\w+\); it lists \[\w+\]/,
      () => importFiles({ root, targets }),
    );
  });

  it('a root naming the pending keys without the targets that delegates to the pending publisher key', async () => {
    const { root } = signFrom(rotation);
    await expectRefused('MESH_ERR_TUF_IMPORT_ONLINE_KEYS', /mixes active and pending online keys \(snapshot=pending, timestamp=pending, publisher=active\)/, () =>
      importFiles({ root }),
    );
  });

  it('pending snapshot/timestamp with the active publisher, or the reverse', async () => {
    const a = signFrom(mixedExport(rotation, active, ['publisher']));
    await expectRefused('MESH_ERR_TUF_IMPORT_ONLINE_KEYS', /publisher=active/, () => importFiles(a));
    const b = signFrom(mixedExport(active, rotation, ['publisher']));
    await expectRefused('MESH_ERR_TUF_IMPORT_ONLINE_KEYS', /snapshot=active, timestamp=active, publisher=pending/, () => importFiles(b));
    const c = signFrom(mixedExport(rotation, active, ['timestamp']));
    await expectRefused('MESH_ERR_TUF_IMPORT_ONLINE_KEYS', /snapshot=pending, timestamp=active/, () => importFiles(c));
  });

  it('an ordinary root naming the active keys is still accepted while a rotation is staged, and the rotation stays pending', async () => {
    const { root, targets } = signFrom(active);
    const result = await importFiles({ root, targets });
    expect(result.activatedOnlineKeys).toBeUndefined();
    expect(cli.tuf.pendingOnlineRotation()).toBeDefined();
    // The staged export now names stale versions: signed from it, the import is refused on the version.
    const stale = signFrom(rotation);
    await expectRefused('MESH_ERR_TUF_IMPORT_VERSION', /^root version 3 is not the current version 3 \+ 1/, () => importFiles(stale));
  });
});

describe('tuf import activates the pending keys', () => {
  it('in one import: new root and targets, publisher and every bin re-signed; old private keys deleted; a client pinned to v1 follows', async () => {
    const old = await cli.tuf.onlineKeys();
    // Re-export after the ordinary import above: same pending keys, current versions.
    const { exported, pending } = await cli.tuf.exportOnlineRotation();
    const file = path.join(transfer, 'rotation-current.json');
    fs.writeFileSync(file, JSON.stringify(exported));
    const { root, targets } = signFrom(file);
    const before = t.ctx.tuf.versions();
    const audited: unknown[] = [];
    const result = await cli.tuf.importSigned({ root: fs.readFileSync(root), targets: fs.readFileSync(targets) }, { onInstalled: (r) => audited.push(r.activatedOnlineKeys) });
    expect(result.activatedOnlineKeys).toEqual({ keyids: pending.keyids, replaced: pending.replaces, stagedAt: pending.stagedAt });
    expect(audited).toEqual([result.activatedOnlineKeys]);
    // Two commits: the bridge (snapshot and timestamp signed by old and new keys), then the activation.
    expect(result.versions).toMatchObject({
      root: before.root + 1,
      targets: before.targets + 1,
      publisher: before.publisher! + 1,
      snapshot: before.snapshot + 2,
      timestamp: before.timestamp + 2,
    });
    expect(Object.keys(result.versions.bins ?? {})).toHaveLength(128);
    // Keys: the pending ones are now ROLE.pem; no pending file, no manifest; the old private keys are nowhere on disk.
    for (const role of ['snapshot', 'timestamp', 'publisher'] as const) expect(keyIdIn(path.join(keysDir(), `${role}.pem`))).toBe(pending.keyids[role]);
    expect(fs.readdirSync(keysDir()).filter((f) => f.startsWith('pending'))).toEqual([]);
    const onDisk = keyidsOnDisk();
    for (const role of ['snapshot', 'timestamp', 'publisher'] as const) expect(onDisk).not.toContain(old.keys[role].keyid);
    expect(cli.tuf.pendingOnlineRotation()).toBeUndefined();
    // The bridge: a device reading the new timestamp with the previous root, or the reverse, verifies it.
    expect(signerOf('timestamp.json')).toEqual([pending.keyids.timestamp, old.keys.timestamp.keyid]);
    expect(signerOf(liveSnapshotFile())).toEqual([pending.keyids.snapshot, old.keys.snapshot.keyid]);
    const previousRoot = Metadata.fromJSON(MetadataKind.Root, JSON.parse(fs.readFileSync(path.join(metadataDir(), `${before.root}.root.json`), 'utf8')));
    const liveTimestamp = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(fs.readFileSync(path.join(metadataDir(), 'timestamp.json'), 'utf8')));
    expect(() => previousRoot.verifyDelegate('timestamp', liveTimestamp)).not.toThrow();
    const bridge = Metadata.fromJSON(MetadataKind.Snapshot, JSON.parse(fs.readFileSync(path.join(metadataDir(), `${before.snapshot + 1}.snapshot.json`), 'utf8')));
    const newRoot = Metadata.fromJSON(MetadataKind.Root, JSON.parse(fs.readFileSync(path.join(metadataDir(), 'root.json'), 'utf8')));
    expect(() => newRoot.verifyDelegate('snapshot', bridge)).not.toThrow();
    expect(() => previousRoot.verifyDelegate('snapshot', bridge)).not.toThrow();
    expect(t.ctx.tuf.keyCustody()).toEqual({ online: ['snapshot', 'timestamp', 'publisher'], offline: ['root', 'targets'] });

    // A device enrolled with root v1 walks every root to the new one and finds targets published before and after.
    const published = await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(2048)), name: 'detector', version: '2.0.0', kind: 'model' });
    const { updater, metadataDir: clientDir } = await clientPinnedToV1(t, device);
    expect(JSON.parse(fs.readFileSync(path.join(clientDir, 'root.json'), 'utf8')).signed.version).toBe(result.versions.root);
    expect((await updater.getTargetInfo(published.targetPath))?.hashes.sha256).toBe(published.sha256);
    expect(await updater.getTargetInfo('detector/1.0.0/detector')).toBeDefined();
    // The re-signer (the running serve) uses the new keys.
    const resigned = await t.ctx.tuf.refreshExpiring(new Date(Date.now() + 30 * 86_400_000));
    expect(resigned.resigned).toContain('timestamp');
    // From now on signed by the new keys alone.
    expect(signerOf('timestamp.json')).toEqual([pending.keyids.timestamp]);
  });

  it('a crash between the commit and the key renames: signing goes on with the keys the metadata names, and the next open finishes the renames', async () => {
    const { file, keyids } = await stage();
    const { root, targets } = signFrom(file);
    // The keys dir as it is right before the renames: old active keys, pending keys, manifest.
    const saved = tempDir();
    for (const f of fs.readdirSync(keysDir())) fs.copyFileSync(path.join(keysDir(), f), path.join(saved, f));
    await importFiles({ root, targets });
    for (const f of fs.readdirSync(saved)) fs.copyFileSync(path.join(saved, f), path.join(keysDir(), f));
    expect(fs.existsSync(path.join(keysDir(), 'pending-timestamp.pem'))).toBe(true);
    await expectRefused('MESH_ERR_TUF_ROTATION_PENDING', /already names the pending snapshot, timestamp, publisher key/, () => cli.tuf.abandonOnlineRotation());

    const published = await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(256)), name: 'detector', version: '3.0.0', kind: 'model' });
    expect(signerOf('timestamp.json')).toEqual([keyids.timestamp]);
    const { updater } = await clientPinnedToV1(t, device);
    expect((await updater.getTargetInfo(published.targetPath))?.hashes.sha256).toBe(published.sha256);

    // Recovery: what `serve` runs at start (initialize) promotes them.
    await cli.tuf.initialize();
    for (const role of ['snapshot', 'timestamp', 'publisher'] as const) expect(keyIdIn(path.join(keysDir(), `${role}.pem`))).toBe(keyids[role]);
    expect(fs.readdirSync(keysDir()).filter((f) => f.startsWith('pending'))).toEqual([]);
    expect(cli.tuf.pendingOnlineRotation()).toBeUndefined();
  });
});

/**
 * Serves the repository as it was at two moments: root files from `rootsFrom`, every other
 * file from `restFrom`. A device fetches root first and timestamp after (spec 5.3, 5.4), so a
 * commit landing between the two gives it exactly that mix.
 */
class MixedStateFetcher extends BaseFetcher {
  constructor(
    private readonly rootsFrom: string,
    private readonly restFrom: string,
  ) {
    super();
  }

  override fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
    const file = path.join(name.endsWith('root.json') ? this.rootsFrom : this.restFrom, name);
    if (!fs.existsSync(file)) return Promise.reject(new DownloadHTTPError(`${name}: not found`, 404));
    return Promise.resolve(Readable.toWeb(fs.createReadStream(file)) as ReadableStream<Uint8Array<ArrayBuffer>>);
  }
}

describe('a device reading across the activation (the window between the root and the timestamp renames)', () => {
  it('verifies every mix of an earlier root listing and a later timestamp chain, from the root it trusted before', async () => {
    const { file, keyids } = await stage();
    const { root, targets } = signFrom(file);
    const published = await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(300)), name: 'detector', version: '4.0.0', kind: 'model' });
    const trusted = t.ctx.tuf.versions().root;
    const copyState = (): string => {
      const dir = tempDir();
      for (const f of fs.readdirSync(metadataDir())) if (!f.startsWith('.')) fs.copyFileSync(path.join(metadataDir(), f), path.join(dir, f));
      return dir;
    };
    // Every state a reader can see: before, and after each atomic rename in the metadata dir.
    const states = [copyState()];
    const rename = fsModule.renameSync;
    fsModule.renameSync = (from: fs.PathLike, to: fs.PathLike) => {
      rename(from, to);
      if (path.dirname(String(to)) === metadataDir()) states.push(copyState());
    };
    syncBuiltinESMExports();
    try {
      const started = performance.now();
      await importFiles({ root, targets });
      console.info(`activation import: ${Math.round(performance.now() - started)} ms (write lock held), ${states.length - 1} metadata renames`);
    } finally {
      fsModule.renameSync = rename;
      syncBuiltinESMExports();
    }
    // The bridge commit (timestamp), then the activation (N+1.root.json, root.json, timestamp).
    expect(states).toHaveLength(5);
    const failures: string[] = [];
    for (let i = 0; i < states.length; i++) {
      for (let j = i; j < states.length; j++) {
        const dir = tempDir();
        fs.copyFileSync(path.join(states[0]!, `${trusted}.root.json`), path.join(dir, 'root.json'));
        const updater = new Updater({
          metadataDir: dir,
          targetDir: tempDir(),
          metadataBaseUrl: 'https://repository.invalid/tuf/metadata',
          targetBaseUrl: 'https://repository.invalid/tuf/targets',
          fetcher: new MixedStateFetcher(states[i]!, states[j]!),
        });
        try {
          await updater.refresh();
          const info = await updater.getTargetInfo(published.targetPath);
          if (info?.hashes.sha256 !== published.sha256) failures.push(`roots from state ${i}, rest from ${j}: target not found`);
        } catch (err) {
          failures.push(`roots from state ${i}, rest from ${j}: ${(err as Error).message}`);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(keyIdIn(path.join(keysDir(), 'timestamp.pem'))).toBe(keyids.timestamp);
  });
});

describe('meshanics-server tuf rotate-online CLI', () => {
  const run = (args: string[], dir = tempDir()) => {
    try {
      return { status: 0, stdout: execFileSync(process.execPath, [SERVER_CLI, ...args, '--data-dir', dir], { encoding: 'utf8', stdio: 'pipe' }), stderr: '' };
    } catch (err) {
      const e = err as { status: number; stderr: string };
      return { status: e.status, stdout: '', stderr: e.stderr };
    }
  };

  it('answers --help and refuses bad flag combinations as usage errors (exit 2)', () => {
    const out = execFileSync(process.execPath, [SERVER_CLI, 'tuf', 'rotate-online', '--help'], { encoding: 'utf8' });
    expect(out).toContain('Usage: meshanics-server tuf rotate-online');
    expect(out).toContain('--stage');
    expect(run(['tuf', 'rotate-online', '--stage']).status).toBe(2);
    expect(run(['tuf', 'rotate-online', '--stage', '--abandon']).status).toBe(2);
    expect(run(['tuf', 'rotate-online', '--abandon', '--out', 'x']).status).toBe(2);
  });

  it('stages, prints, refuses a second stage with its code (exit 1), and abandons, each audited', () => {
    const out = path.join(tempDir(), 'online-keys.json');
    const staged = run(['tuf', 'rotate-online', '--stage', '--out', out], t.dataDir);
    expect(staged.stderr).toBe('');
    const result = JSON.parse(staged.stdout) as { pending: { keyids: Record<string, string> } };
    expect(JSON.parse(fs.readFileSync(out, 'utf8')).keys.publisher.keyid).toBe(result.pending.keyids.publisher);
    expect(JSON.parse(run(['tuf', 'rotate-online'], t.dataDir).stdout).pending.keyids).toEqual(result.pending.keyids);
    expect(run(['tuf', 'rotate-online', '--stage', '--out', out], t.dataDir)).toMatchObject({
      status: 1,
      stderr: expect.stringMatching(/^meshanics-server tuf rotate-online: MESH_ERR_TUF_ROTATION_PENDING: /),
    });
    expect(run(['tuf', 'rotate-online', '--abandon'], t.dataDir).status).toBe(0);
    expect(JSON.parse(run(['tuf', 'rotate-online'], t.dataDir).stdout)).toEqual({ pending: null });
  });
});
