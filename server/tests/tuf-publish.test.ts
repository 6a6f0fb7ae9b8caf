import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { openDataDir } from '../src/config/data-dir.js';
import { isMeshError, type MeshError } from '../src/errors.js';
import { LIFETIME_MS } from '../src/tuf/index.js';
import { MtlsFetcher, provision, startTestServer, tempDir, type TestServer } from './helpers.js';
import type { DeviceCredentials } from '../src/fleet/devices.js';

let t: TestServer;
let device: DeviceCredentials;

beforeAll(async () => {
  t = await startTestServer();
  device = await provision(t.ctx, 'lab', 'tuf-1');
});
afterAll(() => t.close());

function file(bytes: Buffer): string {
  const f = path.join(tempDir(), 'artifact.bin');
  fs.writeFileSync(f, bytes);
  return f;
}

/** A TUF client as the agent runs it: pinned root from issue-cert, mTLS fetcher. */
function updater(): { updater: Updater; targetDir: string } {
  const metadataDir = tempDir();
  const targetDir = tempDir();
  fs.writeFileSync(path.join(metadataDir, 'root.json'), device.tufRootJson);
  return {
    targetDir,
    updater: new Updater({
      metadataDir,
      targetDir,
      metadataBaseUrl: `${t.server.artifactsUrl}/tuf/metadata`,
      targetBaseUrl: `${t.server.artifactsUrl}/tuf/targets`,
      fetcher: new MtlsFetcher(device),
    }),
  };
}

async function rejection(p: Promise<unknown>): Promise<MeshError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isMeshError(err)) throw new Error(`expected a MeshError, got ${String(err)}`);
  return err;
}

describe('publishing into the TUF repository', () => {
  it('publishes a target that tuf-js verifies: refresh, getTargetInfo, downloadTarget', async () => {
    const bytes = crypto.randomBytes(200 * 1024);
    const result = await publishArtifact(t.ctx, { file: file(bytes), name: 'detector', version: '1.0.0', kind: 'model', spec: '{"fileName":"det.onnx"}' });
    expect(result).toEqual({
      name: 'detector',
      version: '1.0.0',
      kind: 'model',
      targetPath: 'detector/1.0.0/detector',
      sha256: crypto.createHash('sha256').update(bytes).digest('hex'),
      length: bytes.length,
      fleet: '*',
    });
    const { updater: u } = updater();
    await u.refresh();
    const info = await u.getTargetInfo(result.targetPath);
    expect(info?.length).toBe(bytes.length);
    expect(info?.hashes.sha256).toBe(result.sha256);
    expect(info?.custom).toEqual({ meshanics: { kind: 'model', spec: { fileName: 'det.onnx' } } });
    const downloaded = await u.downloadTarget(info!);
    expect(fs.readFileSync(downloaded).equals(bytes)).toBe(true);
    expect((await t.ctx.store.getArtifact('detector', '1.0.0'))?.sha256).toBe(result.sha256);
    expect((await t.ctx.store.listAudit({ subject: 'artifact:detector@1.0.0' })).map((e) => e.action)).toEqual(['artifact.published']);
  });

  it('rejects an invalid spec with its path and rule, and writes nothing', async () => {
    const before = t.ctx.tuf.versions();
    const metadataFiles = fs.readdirSync(t.ctx.layout.tufMetadataDir).sort();
    const err = await rejection(publishArtifact(t.ctx, { file: file(Buffer.from('x')), name: 'bad', version: '1.0.0', kind: 'model', spec: { fileName: '../evil' } }));
    expect(err.code).toBe('MESH_ERR_ARTIFACT_INVALID_SPEC');
    expect(err.message).toContain('spec/fileName must match pattern "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"');
    const extra = await rejection(publishArtifact(t.ctx, { file: file(Buffer.from('x')), name: 'bad', version: '1.0.0', kind: 'model', spec: '{"size":1}' }));
    expect(extra.message).toContain('spec must NOT have additional property "size"');
    expect((await rejection(publishArtifact(t.ctx, { file: file(Buffer.from('x')), name: 'bad', version: '1.0.0', kind: 'firmware' }))).code).toBe(
      'MESH_ERR_ARTIFACT_UNKNOWN_KIND',
    );
    expect((await rejection(publishArtifact(t.ctx, { file: file(Buffer.from('x')), name: 'Bad/..', version: '1', kind: 'model' }))).code).toBe('MESH_ERR_ARTIFACT_INVALID_NAME');
    expect(t.ctx.tuf.versions()).toEqual(before);
    expect(fs.readdirSync(t.ctx.layout.tufMetadataDir).sort()).toEqual(metadataFiles);
    expect(fs.existsSync(path.join(t.ctx.layout.tufTargetsDir, 'bad'))).toBe(false);
    expect(fs.readdirSync(t.ctx.layout.tufStagingDir)).toEqual([]);
    expect(await t.ctx.store.getArtifact('bad', '1.0.0')).toBeUndefined();
  });

  it('refuses to publish the same name and version twice (conflict), leaving the first intact', async () => {
    const first = await publishArtifact(t.ctx, { file: file(Buffer.from('one')), name: 'dup', version: '1.0.0', kind: 'model' });
    const versions = t.ctx.tuf.versions();
    const err = await rejection(publishArtifact(t.ctx, { file: file(Buffer.from('two')), name: 'dup', version: '1.0.0', kind: 'model' }));
    expect(err.code).toBe('MESH_ERR_ARTIFACT_CONFLICT');
    expect(err.kind).toBe('conflict');
    expect(t.ctx.tuf.versions()).toEqual(versions);
    expect((await t.ctx.store.getArtifact('dup', '1.0.0'))?.sha256).toBe(first.sha256);
    expect(fs.readdirSync(t.ctx.layout.tufStagingDir)).toEqual([]);
  });

  it('serializes concurrent publishers on separate connections: every target lands in one chain of versions', async () => {
    const second = await openDataDir({ dataDir: t.dataDir, ...t.database });
    try {
      const before = t.ctx.tuf.versions();
      const results = await Promise.all(
        Array.from(
          { length: 6 },
          async (_, i) => await publishArtifact(i % 2 === 0 ? t.ctx : second, { file: file(crypto.randomBytes(4096)), name: 'race', version: `1.0.${i}`, kind: 'model' }),
        ),
      );
      const after = t.ctx.tuf.versions();
      // Artifacts are signed into the hash bins under the publisher role; publisher and top-level targets stay put.
      expect(after.publisher).toBe(before.publisher);
      expect(after.targets).toBe(before.targets);
      expect(after.snapshot).toBe(before.snapshot + 6);
      expect(after.timestamp).toBe(before.timestamp + 6);
      const { updater: u } = updater();
      await u.refresh();
      for (const r of results) expect((await u.getTargetInfo(r.targetPath))?.hashes.sha256).toBe(r.sha256);
    } finally {
      await second.close();
    }
  });

  it('removeTarget withdraws a signed target (its bin, snapshot, timestamp N+1) and a device no longer finds it', async () => {
    const kept = await publishArtifact(t.ctx, { file: file(Buffer.from('kept')), name: 'withdraw', version: '1.0.0', kind: 'model' });
    const gone = await publishArtifact(t.ctx, { file: file(Buffer.from('gone')), name: 'withdraw', version: '2.0.0', kind: 'model' });
    const before = t.ctx.tuf.versions();
    const { bins, ...versions } = await t.ctx.tuf.removeTarget(gone.targetPath);
    expect(versions).toEqual({ ...before, snapshot: before.snapshot + 1, timestamp: before.timestamp + 1 });
    expect(Object.keys(bins ?? {})).toHaveLength(1);
    expect(t.ctx.tuf.hasTarget(gone.targetPath)).toBe(false);
    const { updater: u } = updater();
    await u.refresh();
    expect(await u.getTargetInfo(gone.targetPath)).toBeUndefined();
    expect((await u.getTargetInfo(kept.targetPath))?.hashes.sha256).toBe(kept.sha256);
  });

  it('removeTarget refuses a path that is not signed (MESH_ERR_ARTIFACT_NOT_FOUND) and changes nothing', async () => {
    const before = t.ctx.tuf.versions();
    const metadataFiles = fs.readdirSync(t.ctx.layout.tufMetadataDir).sort();
    const err = await rejection(t.ctx.tuf.removeTarget('never/1.0.0/never'));
    expect(err.code).toBe('MESH_ERR_ARTIFACT_NOT_FOUND');
    expect(err.message).toContain('never/1.0.0/never');
    expect(t.ctx.tuf.versions()).toEqual(before);
    expect(fs.readdirSync(t.ctx.layout.tufMetadataDir).sort()).toEqual(metadataFiles);
  });

  it('re-signs snapshot and timestamp only once less than half their lifetime is left', async () => {
    const now = Date.now();
    expect((await t.ctx.tuf.refreshExpiring(new Date(now))).resigned).toEqual([]);
    const before = t.ctx.tuf.versions();
    const halfTimestamp = await t.ctx.tuf.refreshExpiring(new Date(now + LIFETIME_MS.timestamp * 0.6));
    expect(halfTimestamp.resigned).toEqual(['timestamp']);
    const halfSnapshot = await t.ctx.tuf.refreshExpiring(new Date(now + LIFETIME_MS.snapshot * 0.6));
    expect(halfSnapshot.resigned).toEqual(['snapshot', 'timestamp']);
    expect(t.ctx.tuf.versions()).toEqual({ ...before, snapshot: before.snapshot + 1, timestamp: before.timestamp + 2 });
    // Still a valid repository for a client.
    const { updater: u } = updater();
    await u.refresh();
    expect(await u.getTargetInfo('detector/1.0.0/detector')).toBeDefined();
  });
});
