// The offline-key ceremony in-process: refusals of `tuf import` (each one leaves the metadata
// and keys exactly as they were), the rotations it accepts, and what a tuf-js client pinned to
// root v1 sees afterwards. The process-level story (CLI, running serve, real agent) is
// tests/e2e/tuf-offline-keys.test.ts.
import * as crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metadata, MetadataKind, MetaFile, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { initDataDir, type MeshanicsContext } from '../src/config/data-dir.js';
import type { DeviceCredentials } from '../src/fleet/devices.js';
import { isMeshError } from '../src/errors.js';
import { isTufError, LIFETIME_MS, type TufErrorCode } from '../src/tuf/index.js';
import { loadKeyFile, loadRoleKey, signMetadata } from '../src/tuf/keys.js';
import { keygen, signRoot, signTargets } from '../src/tuf/offline.js';
import { startTestServer, tempDir, type TestServer } from './helpers.js';
import { artifactFile, clientPinnedToV1, expectRefusedUnchanged, importSignedFiles, offlineCeremony } from './helpers/tuf.js';

const SERVER_CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

let t: TestServer;
let device: DeviceCredentials;
/** A second handle on the data dir, as `meshanics-server tuf import` has next to `serve`. */
let importer: MeshanicsContext;
let offline: string;
let transfer: string;

async function expectRefused(code: TufErrorCode, message: RegExp | string, fn: () => unknown): Promise<void> {
  const caught = await expectRefusedUnchanged(importer, isTufError, code, fn);
  expect(caught.message).toMatch(message);
}

const importFiles = (files: { root?: string; targets?: string }) => importSignedFiles(importer, files);

async function writeOnlineKeys(file: string, ctx: MeshanicsContext, edit: (o: Awaited<ReturnType<MeshanicsContext['tuf']['onlineKeys']>>) => void = () => {}): Promise<string> {
  const exported = await ctx.tuf.onlineKeys();
  edit(exported);
  fs.writeFileSync(file, JSON.stringify(exported));
  return file;
}

/** Re-signs a targets file from `sign-targets` after `edit`, with the genuine offline targets key. */
function resignedTargets(from: string, to: string, edit: (json: { signed: { delegations: { roles: Record<string, unknown>[] } } }) => void): string {
  const json = JSON.parse(fs.readFileSync(from, 'utf8'));
  edit(json);
  const md = Metadata.fromJSON(MetadataKind.Targets, json);
  signMetadata(md, loadKeyFile(path.join(offline, 'targets.pem'), 'targets'));
  fs.writeFileSync(to, JSON.stringify(md.toJSON()));
  return to;
}

beforeAll(async () => {
  t = await startTestServer();
  ({ device, cli: importer, offline, transfer } = await offlineCeremony(t, 'offline-1'));
});
afterAll(async () => {
  await importer?.close();
  await t.close();
});

describe('embedded default', () => {
  it('delegates every artifact name (*/*/*) to the online publisher key, terminating, and holds every key online', async () => {
    const dir = tempDir();
    const ctx = await initDataDir({ dataDir: dir });
    try {
      const targets = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(fs.readFileSync(path.join(ctx.layout.tufMetadataDir, '1.targets.json'), 'utf8'))).signed;
      const role = targets.delegations?.roles?.publisher;
      expect(role).toMatchObject({ name: 'publisher', terminating: true, threshold: 1, paths: ['*/*/*'] });
      expect(role!.keyIDs).toEqual([(await ctx.tuf.onlineKeys()).keys.publisher.keyid]);
      expect(Object.keys(targets.targets)).toEqual([]);
      expect(ctx.tuf.keyCustody()).toEqual({ online: ['root', 'targets', 'snapshot', 'timestamp', 'publisher'], offline: [] });
      expect(ctx.tuf.versions()).toEqual({ root: 1, targets: 1, snapshot: 1, timestamp: 1, publisher: 1 });
    } finally {
      await ctx.close();
    }
  });

  it('migrates a repository from before the delegation: its targets move into publisher v1 behind a new targets version, then into hash bins', async () => {
    const dir = tempDir();
    let ctx = await initDataDir({ dataDir: dir });
    const meta = ctx.layout.tufMetadataDir;
    const keys = ctx.layout.tufKeysDir;
    await ctx.close();
    // What an older server wrote: targets v2 listing an artifact directly, a snapshot without publisher.json.
    const now = new Date();
    const later = (days: number) => new Date(now.getTime() + days * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const legacyTarget = new TargetFile({ path: 'old/1.0.0/old', length: 3, hashes: { sha256: crypto.createHash('sha256').update('old').digest('hex') } });
    const targetsMd = new Metadata(new Targets({ version: 2, specVersion: '1.0.31', expires: later(90), targets: { [legacyTarget.path]: legacyTarget } }));
    signMetadata(targetsMd, loadRoleKey(keys, 'targets'));
    const targetsBytes = Buffer.from(JSON.stringify(targetsMd.toJSON()));
    fs.writeFileSync(path.join(meta, '2.targets.json'), targetsBytes);
    const metaFile = (version: number, bytes: Buffer) =>
      new MetaFile({ version, length: bytes.length, hashes: { sha256: crypto.createHash('sha256').update(bytes).digest('hex') } });
    const snapshotMd = new Metadata(new Snapshot({ version: 2, specVersion: '1.0.31', expires: later(7), meta: { 'targets.json': metaFile(2, targetsBytes) } }));
    signMetadata(snapshotMd, loadRoleKey(keys, 'snapshot'));
    const snapshotBytes = Buffer.from(JSON.stringify(snapshotMd.toJSON()));
    fs.writeFileSync(path.join(meta, '2.snapshot.json'), snapshotBytes);
    const timestampMd = new Metadata(new Timestamp({ version: 2, specVersion: '1.0.31', expires: later(1), snapshotMeta: metaFile(2, snapshotBytes) }));
    signMetadata(timestampMd, loadRoleKey(keys, 'timestamp'));
    fs.writeFileSync(path.join(meta, 'timestamp.json'), JSON.stringify(timestampMd.toJSON()));

    ctx = await initDataDir({ dataDir: dir });
    try {
      // Two steps: publisher v1 takes the targets over, then publisher v2 hands them to its hash bins.
      expect(ctx.tuf.versions()).toEqual({ root: 1, targets: 3, snapshot: 4, timestamp: 4, publisher: 2 });
      const publisher = JSON.parse(fs.readFileSync(path.join(meta, '1.publisher.json'), 'utf8'));
      expect(Object.keys(publisher.signed.targets)).toEqual(['old/1.0.0/old']);
      const binned = JSON.parse(fs.readFileSync(path.join(meta, '2.publisher.json'), 'utf8'));
      expect(binned.signed.targets).toEqual({});
      expect(binned.signed.delegations.succinct_roles).toMatchObject({ bit_length: 7, name_prefix: 'publisher-bin' });
      const targets3 = JSON.parse(fs.readFileSync(path.join(meta, '3.targets.json'), 'utf8'));
      expect(targets3.signed.targets).toEqual({});
      expect(targets3.signed.delegations.roles).toMatchObject([{ name: 'publisher', terminating: true, paths: ['*/*/*'] }]);
      expect(ctx.tuf.hasTarget('old/1.0.0/old')).toBe(true);
    } finally {
      await ctx.close();
    }
  });

  it('tuf keygen never overwrites a key', () => {
    expect(() => keygen('root', offline)).toThrowError(/already exists/);
    expect(loadKeyFile(path.join(offline, 'root.pem'), 'root').key.keyID).toBe(JSON.parse(fs.readFileSync(path.join(offline, 'root.pub.json'), 'utf8')).keyid);
    expect(fs.statSync(path.join(offline, 'root.pem')).mode & 0o777).toBe(0o600);
  });
});

describe('tuf import refuses, changing nothing', () => {
  let onlineKeys: string;
  let root2: string;
  let targets2: string;
  beforeAll(async () => {
    onlineKeys = await writeOnlineKeys(path.join(transfer, 'online-keys.json'), t.ctx);
    root2 = path.join(transfer, 'root-2.json');
    targets2 = path.join(transfer, 'targets-2.json');
    signRoot({ keysDir: offline, onlineKeysFile: onlineKeys, out: root2 });
    signTargets({ keysDir: offline, onlineKeysFile: onlineKeys, rootFile: root2, out: targets2 });
  });

  it('a targets version signed by a key the new root does not list (wrong key)', async () => {
    const other = path.join(tempDir(), 'keys');
    keygen('root', other);
    keygen('targets', other);
    const otherRoot = path.join(transfer, 'other-root.json');
    const otherTargets = path.join(transfer, 'other-targets.json');
    signRoot({ keysDir: other, onlineKeysFile: onlineKeys, out: otherRoot });
    signTargets({ keysDir: other, onlineKeysFile: onlineKeys, rootFile: otherRoot, out: otherTargets });
    await expectRefused(
      'MESH_ERR_TUF_IMPORT_SIGNATURE',
      /^targets v2 is not signed by a threshold of the targets keys of root v2: 0 of the 1 valid signatures needed from distinct targets keys of root v2: signed by \[\]; missing \[[0-9a-f]{64}\]$/,
      () => importFiles({ root: root2, targets: otherTargets }),
    );
    // And the offline tool catches the mix-up before anything travels.
    expect(() => signTargets({ keysDir: other, onlineKeysFile: onlineKeys, rootFile: root2, out: path.join(transfer, 'x.json') })).toThrowError(/does not list targets key/);
  });

  it('a root file altered after signing (tampered)', async () => {
    const json = JSON.parse(fs.readFileSync(root2, 'utf8'));
    json.signed.expires = '2099-01-01T00:00:00Z';
    const tampered = path.join(transfer, 'tampered-root.json');
    fs.writeFileSync(tampered, JSON.stringify(json));
    await expectRefused(
      'MESH_ERR_TUF_IMPORT_SIGNATURE',
      /^root v2 is not signed by a threshold of its own root keys \(spec 5\.3\.4 \(2\)\): 0 of the 1 valid signatures needed/,
      () => importFiles({ root: tampered, targets: targets2 }),
    );
    const garbage = path.join(transfer, 'garbage.json');
    fs.writeFileSync(garbage, fs.readFileSync(root2, 'utf8').slice(0, 100));
    await expectRefused('MESH_ERR_TUF_IMPORT_INVALID', /^the root file is not valid root metadata/, () => importFiles({ root: garbage }));
    await expectRefused('MESH_ERR_TUF_IMPORT_INVALID', /"signed._type" is "targets", expected "root"/, () => importFiles({ root: targets2 }));
  });

  it('a version that is not current + 1 (stale or skipping)', async () => {
    for (const [root, expected] of [
      [0, /^root version 1 is not the current version 1 \+ 1$/],
      [2, /^root version 3 is not the current version 1 \+ 1$/],
    ] as const) {
      const keys = await writeOnlineKeys(path.join(transfer, `online-${root}.json`), t.ctx, (o) => {
        o.versions.root = root;
      });
      const out = path.join(transfer, `root-v${root + 1}.json`);
      signRoot({ keysDir: offline, onlineKeysFile: keys, out });
      await expectRefused('MESH_ERR_TUF_IMPORT_VERSION', expected, () => importFiles({ root: out, targets: targets2 }));
    }
    const staleKeys = await writeOnlineKeys(path.join(transfer, 'online-stale-targets.json'), t.ctx, (o) => {
      o.versions.targets = 0;
    });
    const staleTargets = path.join(transfer, 'stale-targets.json');
    signTargets({ keysDir: offline, onlineKeysFile: staleKeys, rootFile: root2, out: staleTargets });
    await expectRefused('MESH_ERR_TUF_IMPORT_VERSION', /^targets version 1 is not the current version 1 \+ 1$/, () => importFiles({ root: root2, targets: staleTargets }));
  });

  it('an expired root', async () => {
    const out = path.join(transfer, 'expired-root.json');
    signRoot({ keysDir: offline, onlineKeysFile: onlineKeys, out, now: new Date('2020-01-01T00:00:00Z'), expiresInMs: 86_400_000 });
    await expectRefused('MESH_ERR_TUF_IMPORT_EXPIRED', /^root v2 expired at 2020-01-02T00:00:00Z$/, () => importFiles({ root: out, targets: targets2 }));
  });

  it('a root that does not name the snapshot and timestamp keys this server holds', async () => {
    const elsewhere = await initDataDir({ dataDir: tempDir() });
    try {
      const foreign = await writeOnlineKeys(path.join(transfer, 'foreign-online.json'), elsewhere);
      const out = path.join(transfer, 'foreign-root.json');
      signRoot({ keysDir: offline, onlineKeysFile: foreign, out });
      await expectRefused('MESH_ERR_TUF_IMPORT_ONLINE_KEYS', /^root v2 must list this server's snapshot key [0-9a-f]{64} with threshold 1/, () =>
        importFiles({ root: out, targets: targets2 }),
      );
    } finally {
      await elsewhere.close();
    }
  });

  it('a root that moves the targets key without the targets version signed by it', async () => {
    await expectRefused('MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED', /^the current targets v1 does not verify under root v2/, () => importFiles({ root: root2 }));
  });

  it('a non-terminating delegation', async () => {
    const out = resignedTargets(targets2, path.join(transfer, 'non-terminating.json'), (j) => {
      j.signed.delegations.roles[0]!.terminating = false;
    });
    await expectRefused('MESH_ERR_TUF_IMPORT_DELEGATION', /the "publisher" delegation must be terminating/, () => importFiles({ root: root2, targets: out }));
  });

  it('a delegation broader than the artifact layout, or to another role or key', async () => {
    expect(() => signTargets({ keysDir: offline, onlineKeysFile: onlineKeys, rootFile: root2, out: path.join(transfer, 'x.json'), delegatePaths: ['*'] })).toThrowError(
      /"\*" must have exactly three segments NAME\/VERSION\/FILE/,
    );
    for (const [name, paths, expected] of [
      ['star', ['*'], /delegated path "\*" must have exactly three segments/],
      ['globstar', ['**/*/*'], /delegated path "\*\*\/\*\/\*": segment "\*\*" uses "\*\*"/],
      ['deep', ['*/*/*/*'], /must have exactly three segments/],
      ['none', [], /needs at least one path pattern/],
    ] as const) {
      const out = resignedTargets(targets2, path.join(transfer, `broad-${name}.json`), (j) => {
        j.signed.delegations.roles[0]!.paths = [...paths];
      });
      await expectRefused('MESH_ERR_TUF_IMPORT_DELEGATION', expected, () => importFiles({ root: root2, targets: out }));
    }
    const hashed = resignedTargets(targets2, path.join(transfer, 'hash-prefixes.json'), (j) => {
      delete j.signed.delegations.roles[0]!.paths;
      j.signed.delegations.roles[0]!.path_hash_prefixes = [''];
    });
    await expectRefused('MESH_ERR_TUF_IMPORT_DELEGATION', /path_hash_prefixes are not supported/, () => importFiles({ root: root2, targets: hashed }));
    const renamed = resignedTargets(targets2, path.join(transfer, 'renamed.json'), (j) => {
      j.signed.delegations.roles[0]!.name = 'anyone';
    });
    await expectRefused('MESH_ERR_TUF_IMPORT_DELEGATION', /must delegate to exactly one role "publisher", found \[anyone\]/, () => importFiles({ root: root2, targets: renamed }));
    const strangerKey = await writeOnlineKeys(path.join(transfer, 'stranger-publisher.json'), t.ctx, (o) => {
      o.keys.publisher = o.keys.snapshot;
    });
    const stranger = path.join(transfer, 'stranger.json');
    signTargets({ keysDir: offline, onlineKeysFile: strangerKey, rootFile: root2, out: stranger });
    await expectRefused('MESH_ERR_TUF_IMPORT_DELEGATION', /must be threshold 1 of this server's publisher key/, () => importFiles({ root: root2, targets: stranger }));
  });

  it('a delegation that would orphan an already published target', async () => {
    const out = path.join(transfer, 'narrow.json');
    signTargets({ keysDir: offline, onlineKeysFile: onlineKeys, rootFile: root2, out, delegatePaths: ['cam-*/*/*'] });
    await expectRefused('MESH_ERR_TUF_IMPORT_DELEGATION', /paths \[cam-\*\/\*\/\*\] do not cover already published targets: detector\/1\.0\.0\/detector$/, () =>
      importFiles({ root: root2, targets: out }),
    );
  });
});

describe('tuf import installs what the offline machine signed', () => {
  it('root v2 + targets v2: the server adds the old root signature, retires its root/targets keys, and a client pinned to v1 follows', async () => {
    const onlineKeys = await writeOnlineKeys(path.join(transfer, 'online-keys-ok.json'), t.ctx);
    const root2 = path.join(transfer, 'root-2-ok.json');
    const targets2 = path.join(transfer, 'targets-2-ok.json');
    signRoot({ keysDir: offline, onlineKeysFile: onlineKeys, out: root2 });
    signTargets({ keysDir: offline, onlineKeysFile: onlineKeys, rootFile: root2, out: targets2 });
    const before = t.ctx.tuf.versions();
    const audited: unknown[] = [];
    const result = await importer.tuf.importSigned({ root: fs.readFileSync(root2), targets: fs.readFileSync(targets2) }, { onInstalled: (r) => audited.push(r) });
    expect(result.root).toMatchObject({ version: 2, addedCurrentRootSignature: true });
    expect(result.targets).toEqual({ version: 2, delegatedPaths: ['*/*/*'], signedBy: [loadKeyFile(path.join(offline, 'targets.pem'), 'targets').key.keyID] });
    expect(result.removedOnlineKeys).toEqual(['root', 'targets']);
    expect(result.versions).toEqual({ root: 2, targets: 2, snapshot: before.snapshot + 1, timestamp: before.timestamp + 1, publisher: before.publisher });
    expect(audited).toHaveLength(1);
    expect(fs.existsSync(path.join(t.ctx.layout.tufKeysDir, 'root.pem'))).toBe(false);
    expect(fs.existsSync(path.join(t.ctx.layout.tufKeysDir, 'targets.pem'))).toBe(false);
    // The other handle (the running server's) sees the new state at once: keys and metadata are re-read.
    expect(t.ctx.tuf.keyCustody()).toEqual({ online: ['snapshot', 'timestamp', 'publisher'], offline: ['root', 'targets'] });
    const stored = Metadata.fromJSON(MetadataKind.Root, JSON.parse(fs.readFileSync(path.join(t.ctx.layout.tufMetadataDir, '2.root.json'), 'utf8')));
    expect(Object.keys(stored.signatures)).toHaveLength(2);

    const published = await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(2048)), name: 'detector', version: '2.0.0', kind: 'model' });
    const { updater, metadataDir } = await clientPinnedToV1(t, device);
    expect(JSON.parse(fs.readFileSync(path.join(metadataDir, 'root.json'), 'utf8')).signed.version).toBe(2);
    const info = await updater.getTargetInfo(published.targetPath);
    expect(info?.hashes.sha256).toBe(published.sha256);
    expect(await updater.getTargetInfo('detector/1.0.0/detector')).toBeDefined();
  });

  it('the online re-signer renews publisher, snapshot and timestamp but reports targets as overdue once its key is offline', async () => {
    const later = new Date(Date.now() + LIFETIME_MS.targets * 0.6);
    const before = t.ctx.tuf.versions();
    const result = await t.ctx.tuf.refreshExpiring(later);
    expect(result.resigned).toEqual(['publisher', 'snapshot', 'timestamp']);
    expect(result.overdue).toEqual(['targets']);
    expect(t.ctx.tuf.versions()).toEqual({ ...before, publisher: before.publisher! + 1, snapshot: before.snapshot + 1, timestamp: before.timestamp + 1 });
  });

  it('a later root without the current (offline) root signature is refused; with it, clients follow v1 -> v2 -> v3', async () => {
    const rotated = path.join(tempDir(), 'keys');
    keygen('root', rotated);
    // Only root rotates: the targets key stays, so copy its public half.
    fs.copyFileSync(path.join(offline, 'targets.pub.json'), path.join(rotated, 'targets.pub.json'));
    const onlineKeys = await writeOnlineKeys(path.join(transfer, 'online-keys-3.json'), t.ctx);
    const unsigned = path.join(transfer, 'root-3-new-key-only.json');
    signRoot({ keysDir: rotated, onlineKeysFile: onlineKeys, out: unsigned });
    await expectRefused(
      'MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE',
      /^root v3 is not signed by a threshold of the current root v2 keys \(spec 5\.3\.4 \(1\)\): 0 of the 1 valid signatures needed .*; missing \[[0-9a-f]{64}\]; each holder of a current root key adds theirs/,
      () => importFiles({ root: unsigned }),
    );
    const root3 = path.join(transfer, 'root-3.json');
    expect(signRoot({ keysDir: rotated, onlineKeysFile: onlineKeys, out: root3, previousRootKeyFile: path.join(offline, 'root.pem') }).signedBy).toHaveLength(2);
    const result = await importFiles({ root: root3 });
    expect(result.root).toMatchObject({ version: 3, addedCurrentRootSignature: false });
    expect(result.removedOnlineKeys).toEqual([]);
    const { metadataDir } = await clientPinnedToV1(t, device);
    expect(JSON.parse(fs.readFileSync(path.join(metadataDir, 'root.json'), 'utf8')).signed.version).toBe(3);
  });

  it('a narrower delegation is enforced at publish: names outside it are refused before signing', async () => {
    const onlineKeys = await writeOnlineKeys(path.join(transfer, 'online-keys-narrow.json'), t.ctx);
    const targets = path.join(transfer, 'targets-narrow.json');
    signTargets({
      keysDir: offline,
      onlineKeysFile: onlineKeys,
      rootFile: path.join(t.ctx.layout.tufMetadataDir, 'root.json'),
      out: targets,
      delegatePaths: ['detector/*/*', 'cam-*/*/*'],
    });
    expect((await importFiles({ targets })).targets).toMatchObject({ version: 3, delegatedPaths: ['detector/*/*', 'cam-*/*/*'] });
    const before = t.ctx.tuf.versions();
    const err = await publishArtifact(t.ctx, { file: artifactFile(Buffer.from('x')), name: 'other', version: '1.0.0', kind: 'model' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMeshError(err, 'MESH_ERR_ARTIFACT_INVALID_NAME')).toBe(true);
    expect((err as Error).message).toContain('outside the names top-level targets delegates to the publisher key');
    expect(t.ctx.tuf.versions()).toEqual(before);
    const cam = await publishArtifact(t.ctx, { file: artifactFile(Buffer.from('cam')), name: 'cam-front', version: '1.0.0', kind: 'model' });
    const { updater } = await clientPinnedToV1(t, device);
    expect((await updater.getTargetInfo(cam.targetPath))?.hashes.sha256).toBe(cam.sha256);
    const md = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(fs.readFileSync(path.join(t.ctx.layout.tufMetadataDir, '3.targets.json'), 'utf8')));
    expect(md.signed.delegations?.roles?.publisher?.terminating).toBe(true);
  });
});

describe('meshanics-server tuf CLI', () => {
  it('answers --help for every tuf subcommand', () => {
    for (const sub of ['keygen', 'online-keys', 'sign-root', 'sign-targets', 'import', 'status']) {
      const out = execFileSync(process.execPath, [SERVER_CLI, 'tuf', sub, '--help'], { encoding: 'utf8' });
      expect(out).toContain(`Usage: meshanics-server tuf ${sub}`);
    }
  });

  it('prints a refusal as its stable code with exit 1, and a usage error with exit 2', () => {
    const dir = tempDir();
    const run = (args: string[]) => {
      try {
        execFileSync(process.execPath, [SERVER_CLI, ...args, '--data-dir', dir], { encoding: 'utf8', stdio: 'pipe' });
        return { status: 0, stderr: '' };
      } catch (err) {
        const e = err as { status: number; stderr: string };
        return { status: e.status, stderr: e.stderr };
      }
    };
    const keys = path.join(dir, 'offline');
    expect(run(['tuf', 'keygen', '--role', 'root', '--out', keys]).status).toBe(0);
    expect(run(['tuf', 'keygen', '--role', 'root', '--out', keys])).toEqual({
      status: 1,
      stderr: expect.stringMatching(/^meshanics-server tuf keygen: MESH_ERR_TUF_KEY_EXISTS: .*root\.pub\.json already exists/),
    });
    expect(run(['tuf', 'keygen', '--role', 'snapshot', '--out', keys]).status).toBe(2);
    expect(run(['tuf', 'import']).status).toBe(2);
  });
});
