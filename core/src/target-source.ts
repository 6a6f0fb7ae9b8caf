import type { VerifiedTarget } from './plugin.js';

/**
 * The narrow seam between the pipeline and wherever targets come from. The agent's default
 * is TUF over mTLS (tuf/tuf-target-source.ts); nothing else in core knows about TUF or HTTP.
 */
export interface TargetSource {
  /** Refreshes trusted metadata and returns the verified facts about a target path. */
  resolve(targetPath: string, signal: AbortSignal): Promise<VerifiedTarget>;
  /**
   * Streams the target into `destination`, checking length and sha256 against `target` in
   * the same pass; throws (and leaves nothing behind) on any mismatch.
   */
  fetch(target: VerifiedTarget, destination: string, options: { onProgress: (done: number, total: number) => void; signal: AbortSignal }): Promise<void>;
}
