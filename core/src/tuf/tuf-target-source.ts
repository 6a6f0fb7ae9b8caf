// TUF client side (TUF spec section 5, "Detailed client workflow"), delegated to tuf-js.
// Trust state lives in one place: the metadata directory, seeded once with the root the
// device was provisioned with and from then on only advanced by tuf-js after it verified
// each new root against the previous one (spec 5.3).
import { constants, promises as fs, readFileSync } from 'node:fs';
import type https from 'node:https';
import path from 'node:path';
import type { Updater } from 'tuf-js';
import { TUF_METADATA_PREFIX, TUF_TARGETS_PREFIX, hashPrefixedTargetPath } from '../contract/tuf-layout.js';
import { MeshError } from '../errors.js';
import { PRIVATE_FILE_MODE, writeFileAtomicSync } from '../kit/atomic-file.js';
import type { VerifiedTarget } from '../plugin.js';
import type { TargetSource } from '../target-source.js';
import { HttpStatusError } from '../transport/https-get.js';
import { downloadVerified } from '../transport/streaming-download.js';
import { DEVICE_UPDATER_CONFIG } from './device-config.js';
import { lastGoodRootFile } from './trust-files.js';

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
  /**
   * Accept a target whose TUF metadata carries no signed kind and spec (custom.meshanics), and
   * take the control plane's word for them. Off unless the agent's config says
   * `tuf.allowUnsignedIntent: true` (a repository published by something other than the
   * Meshanics server); docs/security.md says what it costs.
   */
  allowUnsignedIntent?: boolean;
  /** Told when an unreadable trusted root was replaced (see #recoverTrustedRoot), and from what. */
  onTrustRecovered?: (message: string, from: 'kept' | 'pinned') => void;
}

/**
 * The signed intent of a target (custom.meshanics: kind and spec) as the TUF metadata gives
 * it. The server signs both into every target it publishes (server/src/catalog/publish.ts),
 * spec `{}` when the artifact has none. `absent`: no custom.meshanics at all; `malformed`: one
 * whose kind is not a string (or that is not an object); otherwise what it signs, possibly
 * only a kind or only a spec.
 */
type SignedIntent = { kind?: string; spec?: unknown };
function signedIntentOf(custom: unknown): 'absent' | 'malformed' | SignedIntent {
  const meshanics = (custom as { meshanics?: unknown } | undefined)?.meshanics;
  if (meshanics === undefined) return 'absent';
  if (!meshanics || typeof meshanics !== 'object' || Array.isArray(meshanics)) return 'malformed';
  const { kind, spec } = meshanics as { kind?: unknown; spec?: unknown };
  if (kind !== undefined && typeof kind !== 'string') return 'malformed';
  return { ...(kind !== undefined ? { kind } : {}), ...(spec !== undefined ? { spec } : {}) };
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
    const source = new TufTargetSource(options);
    // An agent upgraded from a version that kept no copy gets one now, not at its next update.
    source.#rememberTrustedRoot();
    return source;
  }

  /** After a certificate renewal: present the new certificate from now on. */
  useHttpsAgent(agent: https.Agent): void {
    this.#options.httpsAgent = agent;
  }

  #base(prefix: string): string {
    return new URL(prefix, this.#options.artifactServer).toString();
  }

  /**
   * The last root this device verified, kept beside the metadata dir (not in it: tuf-js names
   * delegated roles' files there) and written atomically, which tuf-js does not do for its
   * own copy.
   */
  get #lastGoodRootFile(): string {
    return lastGoodRootFile(this.#options.metadataDir);
  }

  /**
   * tuf-js persists each newly verified root with writeFileSync over root.json (truncate, then
   * write; Updater.persistMetadata): a power cut in between leaves a root it can no longer
   * parse, and every refresh after it would fail, an agent that can never update again. Before
   * each refresh, a root.json that is not JSON is replaced by the last verified root (else the
   * pinned one). The kept copy is the root this device verified last (or one step behind it).
   * The pinned root is the trust the device was provisioned with, as after a factory reset: a
   * refresh from it walks the server's root chain forward, verifying each step (spec 5.3), but
   * a root key retired since then would be trusted again for that walk, so that case is told
   * as an error; it needs a torn root.json and no kept copy, which the agent writes at every
   * start. Read
   * synchronously, like #consistentSnapshot, so a concurrent refresh's write is never seen
   * half done.
   */
  #recoverTrustedRoot(): void {
    const file = path.join(this.#options.metadataDir, 'root.json');
    let problem: string;
    try {
      JSON.parse(readFileSync(file, 'utf8'));
      return;
    } catch (err) {
      problem = (err as Error).message;
    }
    for (const candidate of [this.#lastGoodRootFile, this.#options.pinnedRootFile]) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(candidate);
        JSON.parse(bytes.toString('utf8'));
      } catch {
        continue;
      }
      writeFileAtomicSync(file, bytes, { mode: PRIVATE_FILE_MODE });
      const pinned = candidate === this.#options.pinnedRootFile;
      this.#options.onTrustRecovered?.(
        `the trusted TUF root ${file} was unreadable (${problem}); restored ${candidate}, the next refresh walks the root chain forward from it` +
          (pinned ? ' (no verified copy was kept: back to the root the device was provisioned with, whose keys may have been retired since)' : ''),
        pinned ? 'pinned' : 'kept',
      );
      return;
    }
  }

  /**
   * The trusted root, kept as the last good one if it changed. After a refresh, failed or not:
   * tuf-js persists a root only once it verified it (spec 5.3.8). Best effort: a copy that
   * cannot be written (a full disk) must not fail an update that succeeded.
   */
  #rememberTrustedRoot(): void {
    try {
      const bytes = readFileSync(path.join(this.#options.metadataDir, 'root.json'));
      JSON.parse(bytes.toString('utf8'));
      let kept: Buffer | undefined;
      try {
        kept = readFileSync(this.#lastGoodRootFile);
      } catch {
        // none kept yet
      }
      if (!kept?.equals(bytes)) writeFileAtomicSync(this.#lastGoodRootFile, bytes, { mode: PRIVATE_FILE_MODE });
    } catch {
      // the next refresh tries again
    }
  }

  async resolve(targetPath: string): Promise<VerifiedTarget> {
    // A fresh Updater per resolution: tuf-js runs the whole client workflow in refresh()
    // (root, timestamp, snapshot, targets: spec 5.3 to 5.6) and its instance is single-use.
    // The fetcher presents the https agent current at this resolution (renewals swap it).
    const [{ Updater }, { MtlsFetcher }] = await loadTufClient();
    this.#recoverTrustedRoot();
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
    } finally {
      this.#rememberTrustedRoot();
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
    const intent = signedIntentOf(info.custom);
    // The assignment's kind and spec come from the control plane; only a signed intent lets
    // the agent hold them to what the publisher signed (pipeline.ts). Without one, a
    // control plane that was tampered with could send signed bytes somewhere else (a config
    // to another destination), so such a target is refused before a byte of it is fetched.
    // The opt-out covers only a target with no custom.meshanics at all: whatever part of an
    // intent is signed is still held to, and one that cannot be read is never taken as none.
    if (intent === 'malformed') {
      throw new MeshError(
        'MESH_ERR_TUF_INTENT_UNSIGNED',
        `target "${targetPath}" carries a custom.meshanics that is not an object with a string kind; refusing it (tuf.allowUnsignedIntent does not cover a malformed intent)`,
      );
    }
    const complete = intent !== 'absent' && intent.kind !== undefined && intent.spec !== undefined;
    if (!complete && !this.#options.allowUnsignedIntent) {
      throw new MeshError(
        'MESH_ERR_TUF_INTENT_UNSIGNED',
        `target "${targetPath}" carries no signed kind and spec (custom.meshanics in the TUF targets metadata); refusing to take the control plane's word for them (agent config tuf.allowUnsignedIntent allows it)`,
      );
    }
    const signed = intent !== 'absent' && (intent.kind !== undefined || intent.spec !== undefined) ? intent : undefined;
    return { targetPath, length: info.length, sha256: sha256.toLowerCase(), ...(signed ? { signed } : {}) };
  }

  /**
   * Whether the root the device trusts now sets consistent_snapshot. tuf-js persisted it in
   * the metadata dir only after verifying it (spec 5.3.8), so this is the verified root.
   * Read synchronously: tuf-js rewrites root.json in place with writeFileSync on this thread
   * (truncate, then write) when another pipeline's refresh follows a rotation, and an
   * asynchronous read runs on the thread pool, where it could see the file half written.
   */
  async #consistentSnapshot(): Promise<boolean> {
    const { Metadata, MetadataKind } = await import('@tufjs/models');
    const file = path.join(this.#options.metadataDir, 'root.json');
    try {
      const root = Metadata.fromJSON(MetadataKind.Root, JSON.parse(readFileSync(file, 'utf8')) as Parameters<typeof Metadata.fromJSON>[1]);
      return root.signed.consistentSnapshot;
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_REFRESH', `cannot read the trusted TUF root ${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  async fetch(target: VerifiedTarget, destination: string, options: { onProgress: (done: number, total: number) => void; signal: AbortSignal }): Promise<void> {
    // Spec 5.7.3: the target is fetched as HASH.FILENAME.EXT only when the trusted root says
    // consistent_snapshot is true (spec 6.2), and as FILENAME.EXT otherwise. The metadata
    // names follow the same root inside tuf-js: VERSION.ROLE.json or ROLE.json (spec 5.5.1,
    // 5.6.1); root itself is always VERSION.root.json (spec 5.3.3).
    const consistent = await this.#consistentSnapshot();
    const rel = consistent ? hashPrefixedTargetPath(target.targetPath, target.sha256) : target.targetPath;
    const url = new URL(rel.split('/').map(encodeURIComponent).join('/'), this.#base(TUF_TARGETS_PREFIX)).toString();
    try {
      await downloadVerified({
        agent: this.#options.httpsAgent,
        url,
        destination,
        target,
        onProgress: options.onProgress,
        signal: options.signal,
      });
    } catch (err) {
      const status = (err as { cause?: unknown }).cause;
      if (status instanceof HttpStatusError && status.statusCode === 404) {
        // The repository does not serve the name its own root prescribes: say which rule.
        throw new MeshError(
          'MESH_ERR_DOWNLOAD_FAILED',
          `download of ${target.targetPath} failed: ${status.message}; the trusted root says consistent_snapshot: ${consistent}, so the target is fetched as ${consistent ? 'HASH.FILENAME' : 'FILENAME, not HASH.FILENAME'} (TUF spec 5.7.3)`,
          { cause: err },
        );
      }
      throw err;
    }
  }
}
