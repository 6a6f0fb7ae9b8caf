// Issue 23, "never sign what a device cannot verify". Gate (a): publishArtifact refuses values
// outside the bounds devices can verify (catalog/signed-bounds.ts) before anything is staged.
// Gate (b): TufRepository verifies every candidate with the device's own tuf-js client before
// writing it (tuf/verification-gate.ts); the hostile values here are handed straight to
// addTarget, below gate (a), as a caller that forgot the bounds would. After every refusal the
// repository is byte-for-byte unchanged and a real tuf-js client over mTLS still verifies it.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact, publishedFiles } from '../src/catalog/publish.js';
import { isMeshError, type MeshError } from '../src/errors.js';
import { MtlsFetcher, provision, startTestServer, tempDir, type TestServer } from './helpers.js';
import type { DeviceCredentials } from '../src/fleet/devices.js';
import type { NewTarget } from '../src/tuf/index.js';

let t: TestServer;
let device: DeviceCredentials;
let good: Awaited<ReturnType<typeof publishArtifact>>;

beforeAll(async () => {
  t = await startTestServer();
  device = await provision(t.ctx, 'blue', 'tuf-gates');
  good = await publishArtifact(t.ctx, { file: file(Buffer.from('good')), name: 'good', version: '1.0.0', kind: 'model', spec: { fileName: 'good.onnx' } });
});
afterAll(() => t.close());

function file(bytes: Buffer): string {
  const f = path.join(tempDir(), 'artifact.bin');
  fs.writeFileSync(f, bytes);
  return f;
}

/** `{"a":[[[...]]]}` with `depth` levels of objects and arrays in all (built without recursion). */
function nested(depth: number): Record<string, unknown> {
  let inner: unknown = [];
  for (let i = 2; i < depth; i += 1) inner = [inner];
  return { a: inner };
}

async function rejection(p: Promise<unknown>): Promise<MeshError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isMeshError(err)) throw new Error(`expected a MeshError, got ${String(err)}`);
  return err;
}

/** Everything a refusal must leave as it was. */
function snapshotOfRepository() {
  const dir = t.ctx.layout.tufMetadataDir;
  return {
    versions: t.ctx.tuf.versions(),
    files: Object.fromEntries(
      fs
        .readdirSync(dir)
        .sort()
        .map((f) => [
          f,
          crypto
            .createHash('sha256')
            .update(fs.readFileSync(path.join(dir, f)))
            .digest('hex'),
        ]),
    ),
    targets: fs.readdirSync(t.ctx.layout.tufTargetsDir, { recursive: true }).sort(),
    staging: fs.readdirSync(t.ctx.layout.tufStagingDir),
  };
}

/** A device of another fleet: fresh tuf-js client, pinned root, mTLS; finds the good artifact. */
async function deviceStillVerifies(): Promise<void> {
  const metadataDir = tempDir();
  fs.writeFileSync(path.join(metadataDir, 'root.json'), device.tufRootJson);
  const u = new Updater({
    metadataDir,
    metadataBaseUrl: `${t.server.artifactsUrl}/tuf/metadata`,
    targetBaseUrl: `${t.server.artifactsUrl}/tuf/targets`,
    fetcher: new MtlsFetcher(device),
  });
  await u.refresh();
  expect((await u.getTargetInfo(good.targetPath))?.hashes.sha256).toBe(good.sha256);
}

describe('gate (a): bounds on what a publish puts into signed metadata', () => {
  const cases: Array<[string, () => Partial<Parameters<typeof publishArtifact>[1]>, RegExp]> = [
    ['a manifest nested 3,000 deep', () => ({ manifest: nested(3000) }), /manifest\/a\/0\/0\/.* is nested deeper than 32 levels/],
    ['a spec nested 3,000 deep (JSON text, as the CLI passes it)', () => ({ spec: JSON.stringify(nested(3000)) }), /spec\/a\/0\/0\/.* is nested deeper than 32 levels/],
    ['a spec larger than 64 KiB', () => ({ spec: { fileName: 'x.onnx', pad: Array.from({ length: 20 }, () => 'x'.repeat(4000)) } }), /spec is larger than 65536 bytes/],
    ['a fractional number (canonical JSON has none; signing it was a 500)', () => ({ manifest: { ratio: 0.5 } }), /manifest\/ratio is 0.5: numbers must be integers/],
    ['-0 (signed as 0)', () => ({ manifest: { zero: -0 } }), /manifest\/zero is -0/],
    ['keys with lone surrogates (two collapse into one U+FFFD on the device)', () => ({ manifest: JSON.parse('{"\\ud800":1,"\\udc00":2}') }), /the key is not well-formed Unicode/],
  ];
  for (const [what, input, message] of cases) {
    it(`refuses ${what} with MESH_ERR_ARTIFACT_OUT_OF_BOUNDS and changes nothing`, async () => {
      const before = snapshotOfRepository();
      const err = await rejection(publishArtifact(t.ctx, { file: file(Buffer.from('x')), name: 'hostile', version: '1.0.0', kind: 'model', ...input() }));
      expect(err.code).toBe('MESH_ERR_ARTIFACT_OUT_OF_BOUNDS');
      expect(err.kind).toBe('invalid');
      expect(err.message).toMatch(message);
      expect(snapshotOfRepository()).toEqual(before);
      expect(await t.ctx.store.getArtifact('hostile', '1.0.0')).toBeUndefined();
      await deviceStillVerifies();
    });
  }

  it('keeps the manifest out of signed metadata: only its sha256 and length are signed, its bytes served beside the target', async () => {
    const manifest = { notes: `line 1\n${'x'.repeat(100_000)}`, layers: [1, 2, 3] };
    const p = await publishArtifact(t.ctx, { file: file(Buffer.from('m')), name: 'with-manifest', version: '1.0.0', kind: 'model', manifest });
    const metadataDir = tempDir();
    fs.writeFileSync(path.join(metadataDir, 'root.json'), device.tufRootJson);
    const u = new Updater({ metadataDir, metadataBaseUrl: `${t.server.artifactsUrl}/tuf/metadata`, fetcher: new MtlsFetcher(device) });
    await u.refresh();
    const info = await u.getTargetInfo(p.targetPath);
    const signed = (info?.custom as { meshanics: { manifest: { sha256: string; length: number } } }).meshanics.manifest;
    const served = fs.readFileSync(path.join(t.ctx.layout.tufTargetsDir, 'with-manifest', '1.0.0', `${signed.sha256}.with-manifest.manifest.json`));
    expect(served.length).toBe(signed.length);
    expect(crypto.createHash('sha256').update(served).digest('hex')).toBe(signed.sha256);
    expect(JSON.parse(served.toString('utf8'))).toEqual(manifest);
    // What a withdrawal has to delete: the artifact bytes and the served manifest.
    const record = (await t.ctx.store.getArtifact('with-manifest', '1.0.0'))!;
    expect(publishedFiles(t.ctx.layout.tufTargetsDir, record).map((f) => fs.existsSync(f))).toEqual([true, true]);
    expect(publishedFiles(t.ctx.layout.tufTargetsDir, record)[1]).toBe(
      path.join(t.ctx.layout.tufTargetsDir, 'with-manifest', '1.0.0', `${signed.sha256}.with-manifest.manifest.json`),
    );
    // No metadata file carries the 100 KB of notes.
    for (const f of fs.readdirSync(t.ctx.layout.tufMetadataDir)) expect(fs.statSync(path.join(t.ctx.layout.tufMetadataDir, f)).size).toBeLessThan(50_000);
  });
});

describe('gate (b): the device TUF client verifies every candidate before it is written', () => {
  const target = (name: string, custom: NewTarget['custom']) => ({ path: `${name}/1.0.0/${name}`, sha256: 'ab'.repeat(32), length: 1, custom });
  // The hostile value as the signed spec: a target without a signed intent is refused before any gate.
  const intent = (spec: Record<string, unknown>) => ({ meshanics: { kind: 'model', spec } });

  it('refuses a custom nested 200 deep (signable here, deeper than devices verify) with MESH_ERR_TUF_CANDIDATE_UNVERIFIABLE', async () => {
    const before = snapshotOfRepository();
    const err = await rejection(t.ctx.tuf.addTarget(target('deep', intent(nested(200)))));
    expect(err.code).toBe('MESH_ERR_TUF_CANDIDATE_UNVERIFIABLE');
    expect(err.message).toMatch(/nested \d+ levels deep; at most 64 verify on every device/);
    expect(snapshotOfRepository()).toEqual(before);
    await deviceStillVerifies();
  });

  it('refuses the 3,000-deep value too (whether signing it overflows here or the gate refuses it), changing nothing', async () => {
    const before = snapshotOfRepository();
    const err = await rejection(t.ctx.tuf.addTarget(target('deeper', intent(nested(3000)))));
    // Which of the two depends on this process's stack and JIT state, as it did on devices.
    expect(['MESH_ERR_TUF_CANDIDATE_UNVERIFIABLE', 'MESH_ERR_TUF_SIGNING_FAILED']).toContain(err.code);
    expect(snapshotOfRepository()).toEqual(before);
    await deviceStillVerifies();
  });

  it('refuses keys that collapse into one on the device (lone surrogates -> U+FFFD): signed, but not verifiable there', async () => {
    const before = snapshotOfRepository();
    const err = await rejection(t.ctx.tuf.addTarget(target('collapse', intent(JSON.parse('{"\\ud800":1,"\\udc00":2}')))));
    expect(err.code).toBe('MESH_ERR_TUF_CANDIDATE_UNVERIFIABLE');
    expect(err.message).toMatch(/signed by 0\/1 keys/);
    expect(snapshotOfRepository()).toEqual(before);
    await deviceStillVerifies();
  });

  it('signs control characters in strings as a device reads them (canonical JSON leaves them raw; the file escapes them)', async () => {
    const custom = { meshanics: { kind: 'model', spec: { note: 'line 1\nline 2\ttab\u0000nul' } } };
    await t.ctx.tuf.addTarget(target('multiline', custom));
    const metadataDir = tempDir();
    fs.writeFileSync(path.join(metadataDir, 'root.json'), device.tufRootJson);
    const u = new Updater({ metadataDir, metadataBaseUrl: `${t.server.artifactsUrl}/tuf/metadata`, fetcher: new MtlsFetcher(device) });
    await u.refresh();
    expect((await u.getTargetInfo('multiline/1.0.0/multiline'))?.custom).toEqual(custom);
    await deviceStillVerifies();
  });
});
