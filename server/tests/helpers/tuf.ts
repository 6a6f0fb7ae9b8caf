// What the in-process TUF ceremony tests (tuf-offline-keys, tuf-online-rotation, tuf-threshold,
// tuf-signed-intent) share: the on-disk fingerprint a refusal must leave as it was, `tuf import`
// from files, the offline ceremony's starting point, and a tuf-js client trusting only the root v1 a device was enrolled with.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Updater } from 'tuf-js';
import { expect } from 'vitest';
import { publishArtifact } from '../../src/catalog/publish.js';
import { openDataDir, type MeshanicsContext } from '../../src/config/data-dir.js';
import type { MeshError } from '../../src/errors.js';
import type { DeviceCredentials } from '../../src/fleet/devices.js';
import { keygen } from '../../src/tuf/offline.js';
import { MtlsFetcher, provision, tempDir, type TestServer } from '../helpers.js';

/** sha256 of every file in the TUF metadata and keys dirs of `ctx`'s data dir. */
export function tufFingerprint(ctx: MeshanicsContext): Record<string, string> {
  const out: Record<string, string> = {};
  for (const dir of [ctx.layout.tufMetadataDir, ctx.layout.tufKeysDir]) {
    for (const f of fs.readdirSync(dir))
      out[path.join(dir, f)] = crypto
        .createHash('sha256')
        .update(fs.readFileSync(path.join(dir, f)))
        .digest('hex');
  }
  return out;
}

/** Runs `fn`, expects it to throw an error `is` accepts with `code`, and nothing in `ctx`'s TUF dirs to have changed; returns the error. */
export async function expectRefusedUnchanged<E extends MeshError>(ctx: MeshanicsContext, is: (err: unknown) => err is E, code: string, fn: () => unknown): Promise<E> {
  const before = tufFingerprint(ctx);
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  if (!is(caught)) throw new Error(`expected ${code}, got ${String(caught)}`);
  expect(caught.code, caught.message).toBe(code);
  expect(tufFingerprint(ctx)).toEqual(before);
  return caught;
}

/** `tuf import` of the root and/or targets files named. */
export function importSignedFiles(ctx: MeshanicsContext, files: { root?: string; targets?: string }) {
  return ctx.tuf.importSigned({
    ...(files.root ? { root: fs.readFileSync(files.root) } : {}),
    ...(files.targets ? { targets: fs.readFileSync(files.targets) } : {}),
  });
}

/** `bytes` written to a fresh temp file, to publish as an artifact. */
export function artifactFile(bytes: Buffer): string {
  const f = path.join(tempDir(), 'artifact.bin');
  fs.writeFileSync(f, bytes);
  return f;
}

/**
 * The starting point of the offline-key ceremony on `t`: device `deviceName` of fleet lab
 * enrolled, a second handle on the data dir (as `meshanics-server tuf ...` has next to `serve`),
 * an offline machine holding a root and a targets key, a transfer dir, detector@1.0.0 published.
 */
export async function offlineCeremony(t: TestServer, deviceName: string): Promise<{ device: DeviceCredentials; cli: MeshanicsContext; offline: string; transfer: string }> {
  const device = await provision(t.ctx, 'lab', deviceName);
  const cli = await openDataDir({ dataDir: t.dataDir, ...t.database });
  const offline = path.join(tempDir('meshanics-offline-machine-'), 'keys');
  const transfer = tempDir('meshanics-transfer-');
  keygen('root', offline);
  keygen('targets', offline);
  await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(1024)), name: 'detector', version: '1.0.0', kind: 'model' });
  return { device, cli, offline, transfer };
}

/** tuf-js as the agent runs it, trusting only the root v1 `device` was enrolled with, refreshed once. */
export async function clientPinnedToV1(t: TestServer, device: DeviceCredentials): Promise<{ updater: Updater; metadataDir: string }> {
  const metadataDir = tempDir();
  fs.writeFileSync(path.join(metadataDir, 'root.json'), device.tufRootJson);
  const updater = new Updater({
    metadataDir,
    targetDir: tempDir(),
    metadataBaseUrl: `${t.server.artifactsUrl}/tuf/metadata`,
    targetBaseUrl: `${t.server.artifactsUrl}/tuf/targets`,
    fetcher: new MtlsFetcher(device),
  });
  await updater.refresh();
  return { updater, metadataDir };
}
