// One error table for @meshanics/core. Codes are stable: operators grep for them and the
// server stores them in report reasons, so never rename one; add new ones instead.
export const ERROR_CODES = Object.freeze({
  MESH_ERR_CONFIG_INVALID: 'agent configuration is invalid',
  MESH_ERR_PLUGIN_INVALID: 'plugin does not satisfy the plugin contract',
  MESH_ERR_PLUGIN_DUPLICATE: 'two plugins provide the same artifact kind or probe type',
  MESH_ERR_PLUGIN_MISSING: 'no plugin for the requested artifact kind or probe type',
  MESH_ERR_PLUGIN_FAILED: 'a plugin failed inside a hook',
  MESH_ERR_SPEC_INVALID: 'assignment spec does not match the plugin schema',
  MESH_ERR_TUF_TARGET_UNKNOWN: 'target is not in the TUF-verified metadata',
  MESH_ERR_TUF_REFRESH: 'TUF metadata could not be refreshed and verified',
  MESH_ERR_TUF_DELEGATION: 'delegated targets metadata could not be fetched and verified',
  MESH_ERR_DIGEST_MISMATCH: 'bytes or expected digest differ from the TUF-verified target',
  MESH_ERR_DOWNLOAD_FAILED: 'target download failed',
  MESH_ERR_TUF_INTENT_UNSIGNED: 'the TUF target carries no signed kind and spec (custom.meshanics) and the agent requires one',
  MESH_ERR_PROBE_FAILED: 'health probe failed on every attempt',
  MESH_ERR_STATE_CORRUPT: 'agent state on disk could not be read',
  MESH_ERR_SWAP_FAILED: 'atomic swap failed',
  MESH_ERR_ALLOWLIST_DENIED: 'the device allowlist does not permit this',
  MESH_ERR_RELOAD_FAILED: 'the reload action after a config swap failed',
  MESH_ERR_ENROLL_REFUSED: 'enrollment or renewal was refused or the server could not be trusted',
  MESH_ERR_IDENTITY_MISSING: 'the agent has no usable identity (enroll first)',
  MESH_ERR_OFFBOARDED: 'this device was offboarded; it must enroll again',
  MESH_ERR_LOGS_FAILED: 'log collection or upload failed',
  MESH_ERR_DISK_FULL: 'no space left on a device file system (ENOSPC or EDQUOT)',
  MESH_ERR_AGENT_UPDATE_REFUSED: 'an agent package does not fit this device (version, architecture or downgrade)',
  MESH_ERR_AGENT_HANDOVER: 'the new agent did not take over healthy before its deadline',
} as const);

/**
 * A vendor's own code: `MESH_ERR_X_<VENDOR>_<PROBLEM>` (upper case, digits, underscores). The
 * `X_` prefix keeps vendor codes apart from core's table, so a new core code can never
 * collide with one a plugin already ships.
 */
export type VendorErrorCode = `MESH_ERR_X_${string}`;
export type ErrorCode = keyof typeof ERROR_CODES;

export const VENDOR_ERROR_CODE = /^MESH_ERR_X_[A-Z0-9]+_[A-Z0-9_]+$/;
const ANY_MESH_CODE = /^MESH_ERR_[A-Z0-9_]+$/;

// A global symbol, not a class identity: a plugin installed with its own copy of
// @meshanics/core throws that copy's MeshError, which `instanceof` in the agent's copy would
// not recognise (issue 27). Symbol.for is shared by every copy in the process.
const BRAND = Symbol.for('meshanics.MeshError');

export class MeshError extends Error {
  readonly code: ErrorCode | VendorErrorCode;
  constructor(code: ErrorCode | VendorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshError';
    this.code = code;
  }

  get [BRAND](): true {
    return true;
  }

  /** Recognises a MeshError from any copy of core (brand or a `MESH_ERR_` code), not by class. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // A subclass keeps plain class identity; only MeshError itself is recognised by brand.
    return this === MeshError ? isMeshError(value) : Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

/**
 * Is `err` a Meshanics error, from this or any other copy of core? True for the brand, or
 * for any Error whose `code` is a `MESH_ERR_...` string (a vendor's own error class). With
 * `code`, only that code.
 */
export function isMeshError(err: unknown, code?: string): err is MeshError {
  if (!err || typeof err !== 'object') return false;
  const candidate = err as { [BRAND]?: unknown; code?: unknown };
  const branded = candidate[BRAND] === true || (err instanceof Error && typeof candidate.code === 'string' && ANY_MESH_CODE.test(candidate.code));
  return branded && typeof candidate.code === 'string' && (code === undefined || candidate.code === code);
}

/** The reason reported to the server: the code first, so it can be matched without parsing prose. */
/** True when `err` or one of its causes is the file system saying it is full (or over quota). */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}

/** Socket-level failures: the path to the server, not what it served. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN', 'EHOSTDOWN']);
/** HTTP answers that say "later", not "no" (RFC 9110 15.5.9, 15.6.3-15.6.5; RFC 6585 4). */
const TRANSIENT_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
/** The same codes where only a message carries them (tuf-js rethrows), so the two lists cannot drift. */
const TRANSIENT_TEXT = new RegExp(`\\b(${[...TRANSIENT_CODES].join('|')}|socket hang up)\\b`);
/**
 * The same failures in a container engine's words (Go's net errors, a registry's 5xx or 429),
 * which reach a plugin only as the text of a pull's error event: `dial tcp ...: connect:
 * connection refused`, `read: connection reset by peer`, `received unexpected HTTP status: 503`.
 * Not "no such host" (a name that does not resolve is configuration, as ENOTFOUND is).
 */
const ENGINE_TRANSIENT_TEXT =
  /(connect: connection refused|connection reset by peer|network is unreachable|no route to host|TLS handshake timeout|toomanyrequests|(received unexpected HTTP status|status code):? (429|50[0234])\b)/i;

/** A plugin's hook failed at `stage` (pipeline.ts callStage wraps it; the plugin's error is the cause). */
export class PluginStageError extends MeshError {
  readonly stage: string;
  constructor(stage: string, message: string, options: { cause: unknown }) {
    super('MESH_ERR_PLUGIN_FAILED', message, options);
    this.stage = stage;
  }
}

/**
 * The download or refresh failure in `err`: itself, or the one a plugin's download hook threw.
 * Only the download hook's: a later stage (verify) failing on the network has already been
 * given its bytes, and is not held back as a download would be.
 */
function networkStepError(err: unknown): Error | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (isMeshError(e, 'MESH_ERR_DOWNLOAD_FAILED') || isMeshError(e, 'MESH_ERR_TUF_REFRESH')) return e;
    if (!(e instanceof PluginStageError && e.stage === 'download')) return undefined;
  }
  return undefined;
}

/**
 * True when a download or a TUF refresh failed on the way, not on what arrived: a reset or
 * refused connection, a DNS hiccup, a 5xx/429. Worth another attempt; a refusal of the
 * content (signature, length, digest, a 404, a full disk) never is. tuf-js may rethrow a
 * fetch error as a plain Error with the code only in its message, hence the text check. The
 * same holds for a plugin's download hook that failed that way (a registry pull).
 */
export function isTransientNetworkError(err: unknown): boolean {
  const failure = networkStepError(err);
  if (!failure || isDiskFull(failure)) return false;
  for (let e: unknown = failure, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
    const status = (e as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number' && TRANSIENT_STATUSES.has(status)) return true;
    if (e !== failure && TRANSIENT_TEXT.test(e.message)) return true;
    if (ENGINE_TRANSIENT_TEXT.test(e.message)) return true;
  }
  return false;
}

export function reasonOf(err: unknown): string {
  if (isMeshError(err)) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
