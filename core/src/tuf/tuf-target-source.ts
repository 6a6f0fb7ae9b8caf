// TUF client side (TUF spec section 5, "Detailed client workflow"), delegated to tuf-js.
// Trust state lives in one place: the metadata directory, seeded once with the root the
// device was provisioned with and from then on only advanced by tuf-js after it verified
// each new root against the previous one (spec 5.3).
import { constants, promises as fs } from 'node:fs';
import type https from 'node:https';
import path from 'node:path';
import type { Updater } from 'tuf-js';
import { TUF_METADATA_PREFIX, TUF_TARGETS_PREFIX, hashPrefixedTargetPath } from '../contract/tuf-layout.js';
import { MeshError } from '../errors.js';
import type { VerifiedTarget } from '../plugin.js';
import type { TargetSource } from '../target-source.js';
import { downloadVerified } from '../transport/streaming-download.js';
import { DEVICE_UPDATER_CONFIG } from './device-config.js';

// tuf-js (with @tufjs/models) is only needed when an assignment is resolved; an idle agent
// never gets there, and importing it at start-up kept ~0.5 MiB of heap and code resident for
// nothing (issue #9, idle RSS). Imported on the first resolve(), then cached by the loader.
function loadTufClient(): Promise<[typeof import('tuf-js'), typeof import('./mtls-fetcher.js')]> {
  return Promise.all([import('tuf-js'), import('./mtls-fetcher.js')]);
}

export interface TufTargetSourceOptions {
  /** Where tuf-js keeps trusted metadata (the device's trust state). */
  metadataDir: string;
  /** The pinned root the device was provisioned with; copied in only if none is trusted yet. */
  pinnedRootFile: string;
  /** https://host:port of the artifact server. */
  artifactServer: string;
  httpsAgent: https.Agent;
  fetchTimeoutMs?: number;
}

export class TufTargetSource implements TargetSource {
  readonly #options: TufTargetSourceOptions;

  private constructor(options: TufTargetSourceOptions) {
    this.#options = options;
  }

  static async create(options: TufTargetSourceOptions): Promise<TufTargetSource> {
    await fs.mkdir(options.metadataDir, { recursive: true, mode: 0o700 });
    const trusted = path.join(options.metadataDir, 'root.json');
    try {
      await fs.copyFile(options.pinnedRootFile, trusted, constants.COPYFILE_EXCL);
    } catch (err) {
      // EEXIST: a root is already trusted, possibly rotated past the pinned one; keep it.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new MeshError('MESH_ERR_CONFIG_INVALID', `cannot pin TUF root from ${options.pinnedRootFile}: ${(err as Error).message}`, { cause: err });
      }
    }
    return new TufTargetSource(options);
  }

  /** After a certificate renewal: present the new certificate from now on. */
  useHttpsAgent(agent: https.Agent): void {
    this.#options.httpsAgent = agent;
  }

  #base(prefix: string): string {
    return new URL(prefix, this.#options.artifactServer).toString();
  }

  async resolve(targetPath: string): Promise<VerifiedTarget> {
    // A fresh Updater per resolution: tuf-js runs the whole client workflow in refresh()
    // (root, timestamp, snapshot, targets: spec 5.3 to 5.6) and its instance is single-use.
    // The fetcher presents the https agent current at this resolution (renewals swap it).
    const [{ Updater }, { MtlsFetcher }] = await loadTufClient();
    const updater = new Updater({
      metadataDir: this.#options.metadataDir,
      metadataBaseUrl: this.#base(TUF_METADATA_PREFIX),
      targetBaseUrl: this.#base(TUF_TARGETS_PREFIX),
      fetcher: new MtlsFetcher(this.#options.httpsAgent, this.#options.fetchTimeoutMs ?? 30_000),
      config: DEVICE_UPDATER_CONFIG,
    });
    try {
      await updater.refresh();
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_REFRESH', `TUF metadata refresh failed: ${(err as Error).message}`, { cause: err });
    }
    // Spec 5.7.1: the target must be listed by the verified targets metadata (or a delegation).
    // Delegated roles are fetched and verified only here (spec 5.6.7), so their refusals
    // (signature, version, length, hash) surface from this call, not from refresh().
    let info: Awaited<ReturnType<Updater['getTargetInfo']>>;
    try {
      info = await updater.getTargetInfo(targetPath);
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_DELEGATION', `delegated TUF metadata for "${targetPath}" failed verification: ${(err as Error).message}`, { cause: err });
    }
    if (!info) {
      throw new MeshError('MESH_ERR_TUF_TARGET_UNKNOWN', `target "${targetPath}" is not in the verified TUF metadata`);
    }
    const sha256 = info.hashes.sha256;
    if (!sha256) {
      throw new MeshError('MESH_ERR_TUF_TARGET_UNKNOWN', `target "${targetPath}" has no sha256 in TUF metadata`);
    }
    const custom = (info.custom as { meshanics?: { kind?: unknown; spec?: unknown } }).meshanics;
    const signed =
      custom && typeof custom === 'object' ? { ...(typeof custom.kind === 'string' ? { kind: custom.kind } : {}), ...('spec' in custom ? { spec: custom.spec } : {}) } : undefined;
    return { targetPath, length: info.length, sha256: sha256.toLowerCase(), ...(signed ? { signed } : {}) };
  }

  async fetch(target: VerifiedTarget, destination: string, options: { onProgress: (done: number, total: number) => void; signal: AbortSignal }): Promise<void> {
    // Spec 5.7.3: with consistent snapshots a target is fetched under its hash-prefixed name.
    const rel = hashPrefixedTargetPath(target.targetPath, target.sha256);
    const url = new URL(rel.split('/').map(encodeURIComponent).join('/'), this.#base(TUF_TARGETS_PREFIX)).toString();
    await downloadVerified({
      agent: this.#options.httpsAgent,
      url,
      destination,
      target,
      onProgress: options.onProgress,
      signal: options.signal,
    });
  }
}
