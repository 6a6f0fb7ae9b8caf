// Refusals of the offline-key ceremony (`meshanics-server tuf ...`). Stable codes like the
// server's error table; kept here because server/src/errors.ts belongs to another change set.
// Each refusal happens before anything is written, so the repository is unchanged.
export const TUF_ERROR_TABLE = {
  MESH_ERR_TUF_IMPORT_INVALID: 'The file is not valid TUF metadata of the expected role, or breaks a rule of this repository',
  MESH_ERR_TUF_IMPORT_VERSION: 'The imported version is not exactly the current version + 1',
  MESH_ERR_TUF_IMPORT_EXPIRED: 'The imported metadata has already expired',
  MESH_ERR_TUF_IMPORT_SIGNATURE: 'The imported metadata is not signed by a threshold of the keys that must sign it',
  MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE: 'The new root is not signed by a threshold of the current root keys (spec 5.3.4)',
  MESH_ERR_TUF_IMPORT_ONLINE_KEYS: 'The new root does not name the snapshot/timestamp keys this server holds',
  MESH_ERR_TUF_IMPORT_DELEGATION: 'The targets delegation is not a terminating, narrow slice delegated to the server publisher key',
  MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED: 'The new root changes the targets key: import the targets version signed by it together',
  MESH_ERR_TUF_KEY_EXISTS: 'A key file already exists at the output path; keys are never overwritten',
  MESH_ERR_TUF_KEY_UNREADABLE: 'A key or key-export file cannot be read',
} as const;

export type TufErrorCode = keyof typeof TUF_ERROR_TABLE;

export class TufError extends Error {
  override readonly name = 'TufError';
  readonly kind = 'invalid';
  constructor(
    readonly code: TufErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message };
  }
}

export function isTufError(err: unknown, code?: TufErrorCode): err is TufError {
  return err instanceof TufError && (code === undefined || err.code === code);
}
