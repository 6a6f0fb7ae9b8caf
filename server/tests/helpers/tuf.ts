// What the in-process TUF ceremony tests (tuf-offline-keys, tuf-online-rotation, tuf-threshold,
// tuf-signed-intent) share: the on-disk fingerprint a refusal must leave as it was, `tuf import`
// from files, and a tuf-js client trusting only the root v1 a device was enrolled with.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Updater } from 'tuf-js';
import { expect } from 'vitest';
import type { MeshanicsContext } from '../../src/config/data-dir.js';
import type { MeshError } from '../../src/errors.js';
import type { DeviceCredentials } from '../../src/fleet/devices.js';
import { MtlsFetcher, tempDir, type TestServer } from '../helpers.js';

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
