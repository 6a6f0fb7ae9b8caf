// Hash bins under the publisher role (server/src/tuf/bins.ts), seen by a device: a device that
// trusted the layout from before the bins follows the migration with an ordinary refresh (root
// and top-level targets unchanged), inline manifests leave the signed metadata, and /readyz
// stops saying ready when devices could not verify the repository.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { describe, expect, it } from 'vitest';
import { initDataDir, openDataDir } from '../src/config/data-dir.js';
import { startServer } from '../src/server.js';
import { loadRoleKey, signMetadata } from '../src/tuf/keys.js';
import { silentLogger } from '../src/observability/log.js';
import { tempDir } from './helpers.js';

/** A device's metadata fetches served straight from the repository's metadata dir. */
class DirFetcher extends BaseFetcher {
  constructor(private readonly dir: string) {
    super();
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const file = path.join(this.dir, decodeURIComponent(url.slice(url.lastIndexOf('/') + 1)));
    if (!fs.existsSync(file)) throw new DownloadHTTPError('not found', 404);
    return new Blob([fs.readFileSync(file)]).stream() as ReadableStream<Uint8Array<ArrayBuffer>>;
  }
}

function device(repoMetadataDir: string, deviceDir: string): Updater {
  return new Updater({ metadataDir: deviceDir, metadataBaseUrl: 'http://repo/metadata/', fetcher: new DirFetcher(repoMetadataDir) });
}

const later = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const metaOf = (version: number, bytes: Buffer) => new MetaFile({ version, length: bytes.length, hashes: { sha256: crypto.createHash('sha256').update(bytes).digest('hex') } });

describe('hash bins', () => {
  it('a device that trusted the pre-bins layout follows the migration with an ordinary refresh; inline manifests become sha256 + length', async () => {
    const dir = tempDir();
    let ctx = await initDataDir({ dataDir: dir });
    const meta = ctx.layout.tufMetadataDir;
    const keys = ctx.layout.tufKeysDir;
    const targetsBytes = fs.readFileSync(path.join(meta, '1.targets.json'));
    await ctx.close();
    // What the previous server wrote: publisher v2 signing the target itself, its manifest inline.
    const manifest = { notes: 'x'.repeat(50_000) };
    const old = new TargetFile({
      path: 'legacy/1.0.0/legacy',
      length: 3,
      hashes: { sha256: crypto.createHash('sha256').update('old').digest('hex') },
      unrecognizedFields: { custom: { meshanics: { kind: 'model', spec: {}, manifest } } },
    });
    const publisherMd = new Metadata(new Targets({ version: 2, specVersion: '1.0.31', expires: later(30), targets: { [old.path]: old } }));
    signMetadata(publisherMd, loadRoleKey(keys, 'publisher'));
    const publisherBytes = Buffer.from(canonicalize(publisherMd.toJSON()));
    fs.writeFileSync(path.join(meta, '2.publisher.json'), publisherBytes);
    const snapshotMd = new Metadata(
      new Snapshot({ version: 2, specVersion: '1.0.31', expires: later(7), meta: { 'targets.json': metaOf(1, targetsBytes), 'publisher.json': metaOf(2, publisherBytes) } }),
    );
    signMetadata(snapshotMd, loadRoleKey(keys, 'snapshot'));
    const snapshotBytes = Buffer.from(canonicalize(snapshotMd.toJSON()));
    fs.writeFileSync(path.join(meta, '2.snapshot.json'), snapshotBytes);
    const timestampMd = new Metadata(new Timestamp({ version: 2, specVersion: '1.0.31', expires: later(1), snapshotMeta: metaOf(2, snapshotBytes) }));
    signMetadata(timestampMd, loadRoleKey(keys, 'timestamp'));
    fs.writeFileSync(path.join(meta, 'timestamp.json'), canonicalize(timestampMd.toJSON()));

    // A device in the field, pinned to root v1, has refreshed against that layout.
    const deviceDir = tempDir();
    fs.copyFileSync(path.join(meta, '1.root.json'), path.join(deviceDir, 'root.json'));
    const before = device(meta, deviceDir);
    await before.refresh();
    expect((await before.getTargetInfo(old.path))?.custom).toEqual({ meshanics: { kind: 'model', spec: {}, manifest } });

    ctx = await initDataDir({ dataDir: dir });
    try {
      expect(ctx.tuf.versions()).toMatchObject({ root: 1, targets: 1, publisher: 3 });
      // Same trusted metadata dir: the device's cached publisher v2 is superseded by v3 and its bins.
      const after = device(meta, deviceDir);
      await after.refresh();
      const info = await after.getTargetInfo(old.path);
      const bytes = Buffer.from(canonicalize(manifest));
      expect(info?.custom).toEqual({ meshanics: { kind: 'model', spec: {}, manifest: { sha256: crypto.createHash('sha256').update(bytes).digest('hex'), length: bytes.length } } });
      expect(JSON.parse(fs.readFileSync(path.join(deviceDir, 'publisher.json'), 'utf8')).signed.version).toBe(3);
      for (const f of fs.readdirSync(deviceDir)) expect(fs.statSync(path.join(deviceDir, f)).size, f).toBeLessThan(20_000);
    } finally {
      await ctx.close();
    }
  });

  it('the re-signer renews the bins with publisher once it is due; a publish re-signs only its own bin', async () => {
    const dir = tempDir();
    const ctx = await initDataDir({ dataDir: dir });
    try {
      const binVersions = () => {
        const meta = ctx.tuf.readState().snapshot.metadata.signed.meta;
        return Object.fromEntries(
          Object.entries(meta)
            .filter(([f]) => f.startsWith('publisher-bin-'))
            .map(([f, m]) => [f, m.version]),
        );
      };
      const initial = binVersions();
      expect(Object.keys(initial)).toHaveLength(128);
      const published = await ctx.tuf.addTarget({ path: 'one/1.0.0/one', sha256: 'ab'.repeat(32), length: 1, custom: { meshanics: { kind: 'model', spec: {} } } });
      expect(Object.values(published.bins ?? {})).toEqual([2]);
      const afterPublish = binVersions();
      expect(Object.entries(afterPublish).filter(([f, v]) => v !== initial[f])).toHaveLength(1);
      // Publisher and every bin have a 30-day lifetime: at day 20 all are due.
      const { resigned } = await ctx.tuf.refreshExpiring(new Date(Date.now() + 20 * 86_400_000));
      expect(resigned).toContain('publisher');
      const renewed = binVersions();
      for (const [f, v] of Object.entries(afterPublish)) expect(renewed[f], f).toBe(v + 1);
      expect(ctx.tuf.hasTarget('one/1.0.0/one')).toBe(true);
    } finally {
      await ctx.close();
    }
  });

  it('/readyz answers 503 once a bin no longer verifies for devices, though the server still reads its own chain', async () => {
    const dataDir = tempDir();
    const server = await startServer({
      dataDir,
      grpcListen: '127.0.0.1:0',
      artifactListen: '127.0.0.1:0',
      enrollListen: '127.0.0.1:0',
      apiListen: '127.0.0.1:0',
      logger: silentLogger(),
    });
    try {
      expect((await fetch(`${server.apiUrl}/readyz`)).status).toBe(200);
      const ctx = await openDataDir({ dataDir });
      try {
        const state = ctx.tuf.readState();
        // Alter one bin behind the server's back: one signature byte flipped.
        const name = Object.keys(state.snapshot.metadata.signed.meta).find((f) => f.startsWith('publisher-bin-'))!;
        const file = path.join(dataDir, 'tuf', 'repo', 'metadata', `${state.snapshot.metadata.signed.meta[name]!.version}.${name}`);
        const md = JSON.parse(fs.readFileSync(file, 'utf8'));
        md.signatures[0].sig = (md.signatures[0].sig[0] === 'a' ? 'b' : 'a') + md.signatures[0].sig.slice(1);
        // A new file, not a write through the name: a new repository's empty bins v1 are one file under 128 names.
        fs.rmSync(file);
        fs.writeFileSync(file, canonicalize(md));
        // A publish into another bin still passes its own gate (it walks only the bins it changes)
        // and gives a new timestamp; the chain the server reads stays verifiable...
        const other = Array.from({ length: 1000 }, (_, i) => `other/${i}/other`).find(
          (p) => state.publisher!.metadata.signed.delegations!.succinctRoles!.getRoleForTarget(p) !== name.replace(/\.json$/, ''),
        )!;
        await ctx.tuf.addTarget({ path: other, sha256: 'ab'.repeat(32), length: 1, custom: { meshanics: { kind: 'model', spec: {} } } });
        expect(() => ctx.tuf.versions()).not.toThrow();
      } finally {
        await ctx.close();
      }
      // ...but a device walking into the altered bin fails, so the server is not ready.
      const res = await fetch(`${server.apiUrl}/readyz`);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: string }).error).toMatch(/does not verify with the device's TUF client/);
    } finally {
      await server.close();
    }
  });
});
