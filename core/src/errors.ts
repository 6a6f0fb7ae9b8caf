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
  MESH_ERR_PROBE_FAILED: 'health probe failed on every attempt',
  MESH_ERR_STATE_CORRUPT: 'agent state on disk could not be read',
  MESH_ERR_SWAP_FAILED: 'atomic swap failed',
  MESH_ERR_ALLOWLIST_DENIED: 'the device allowlist does not permit this',
  MESH_ERR_RELOAD_FAILED: 'the reload action after a config swap failed',
  MESH_ERR_ENROLL_REFUSED: 'enrollment or renewal was refused or the server could not be trusted',
  MESH_ERR_IDENTITY_MISSING: 'the agent has no usable identity (enroll first)',
  MESH_ERR_OFFBOARDED: 'this device was offboarded; it must enroll again',
  MESH_ERR_LOGS_FAILED: 'log collection or upload failed',
  MESH_ERR_AGENT_UPDATE_REFUSED: 'an agent package does not fit this device (version, architecture or downgrade)',
  MESH_ERR_AGENT_HANDOVER: 'the new agent did not take over healthy before its deadline',
} as const);

export type ErrorCode = keyof typeof ERROR_CODES;

export class MeshError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshError';
    this.code = code;
  }
}

/** The reason reported to the server: the code first, so it can be matched without parsing prose. */
export function reasonOf(err: unknown): string {
  if (err instanceof MeshError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
