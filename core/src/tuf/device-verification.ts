// The device's TUF verification, usable without a device: the same tuf-js Updater with the same
// configuration TufTargetSource runs (TUF spec 5, "Detailed client workflow"), fed from bytes
// in memory instead of the artifact server. The server runs it on every candidate metadata
// version before committing it (issue 23: never sign what a device cannot verify).
// Side-effect free on import; exported as `@meshanics/core/tuf-verify`.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { DEVICE_UPDATER_CONFIG } from './device-config.js';

export { DEVICE_UPDATER_CONFIG };

/** What a device must find for one target path; `null` = the target must not be listed. */
export type ExpectedTarget = { length: number; sha256: string; custom?: unknown } | null | undefined;

export interface DeviceVerificationInput {
  /** The root a device trusts now (its metadata dir's root.json). */
  trustedRoot: Uint8Array;
  /** Metadata files by name (VERSION.ROLE.json, timestamp.json); undefined = not served (HTTP 404). */
  file: (name: string) => Uint8Array | undefined;
  /** Target paths to resolve (each walks and verifies the delegations on its way, spec 5.6.7). */
  targets: ReadonlyArray<{ path: string; expect?: ExpectedTarget }>;
}

/**
 * Deepest nesting of objects and arrays the verification accepts in a metadata file. tuf-js
 * (through @tufjs/canonical-json) recurses once per level when it re-canonicalizes "signed",
 * so a deep enough file overflows a device's stack, and where that happens depends on the
 * device (its stack size, whether the code is optimized yet): 3,000 levels failed on devices
 * while a warmed-up server still signed them. Metadata itself is about 6 levels deep and the
 * server bounds a spec at 32, so 64 leaves a wide margin below any stack, deterministically.
 */
export const MAX_METADATA_DEPTH = 64;

/** Nesting depth of JSON text, counted without parsing (and without recursion). */
export function jsonNestingDepth(bytes: Uint8Array): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i += 1) {
    const b = bytes[i];
    if (inString) {
      if (b === 0x5c)
        i += 1; // backslash: skip the escaped byte
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x7b || b === 0x5b) deepest = Math.max(deepest, ++depth);
    else if (b === 0x7d || b === 0x5d) depth -= 1;
  }
  return deepest;
}

class MemoryFetcher extends BaseFetcher {
  constructor(private readonly file: (name: string) => Uint8Array | undefined) {
    super();
  }

  /**
   * Every metadata file comes through here. BaseFetcher's own version streams each one through
   * a temp dir (mkdtemp, write, read back, rm): a third of the CPU of walking all 128 bins for
   * /readyz, and waits on the disk besides, for bytes that are already in memory.
   */
  override async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const bytes = this.served(url);
    // The refusal BaseFetcher makes while streaming past maxLength (tuf-js fetcher.js).
    if (bytes.length > maxLength) throw new DownloadLengthMismatchError('Max length reached');
    return Buffer.from(bytes);
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    return new Blob([new Uint8Array(this.served(url))]).stream() as ReadableStream<Uint8Array<ArrayBuffer>>;
  }

  private served(url: string): Uint8Array {
    const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
    const bytes = this.file(name);
    // 404 on N.root.json means "no newer root" to tuf-js (spec 5.3.3), as from the server.
    if (!bytes) throw new DownloadHTTPError(`${name} is not served`, 404);
    const depth = jsonNestingDepth(bytes);
    if (depth > MAX_METADATA_DEPTH) throw new Error(`${name} is nested ${depth} levels deep; at most ${MAX_METADATA_DEPTH} verify on every device`);
    return bytes;
  }
}

/**
 * Runs a device's refresh and target lookups against the given files; throws an Error whose
 * message says which step a device would fail at. tuf-js checks expiry against the clock.
 */
export async function verifyAsDevice(input: DeviceVerificationInput): Promise<void> {
  const metadataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'meshanics-tuf-verify-'));
  try {
    await fs.writeFile(path.join(metadataDir, 'root.json'), input.trustedRoot);
    const updater = new Updater({
      metadataDir,
      metadataBaseUrl: 'memory://tuf/metadata/',
      targetBaseUrl: 'memory://tuf/targets/',
      fetcher: new MemoryFetcher(input.file),
      config: DEVICE_UPDATER_CONFIG,
    });
    try {
      await updater.refresh();
    } catch (err) {
      throw new Error(`a device's refresh fails: ${(err as Error).message}`, { cause: err });
    }
    for (const { path: targetPath, expect } of input.targets) {
      let info: Awaited<ReturnType<Updater['getTargetInfo']>>;
      try {
        info = await updater.getTargetInfo(targetPath);
      } catch (err) {
        throw new Error(`a device cannot look up ${targetPath}: ${(err as Error).message}`, { cause: err });
      }
      if (expect === undefined) continue;
      if (expect === null) {
        if (info) throw new Error(`a device still finds ${targetPath}`);
        continue;
      }
      if (!info) throw new Error(`a device does not find ${targetPath}`);
      if (info.length !== expect.length || info.hashes.sha256 !== expect.sha256) {
        throw new Error(`a device reads ${targetPath} as ${info.length} bytes sha256 ${info.hashes.sha256}, not ${expect.length} bytes sha256 ${expect.sha256}`);
      }
      if (expect.custom !== undefined && !isDeepStrictEqual(info.custom, expect.custom)) {
        throw new Error(`a device reads a different "custom" for ${targetPath} than was signed`);
      }
    }
  } finally {
    await fs.rm(metadataDir, { recursive: true, force: true });
  }
}
