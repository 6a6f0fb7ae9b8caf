// Refusals of the offline-key ceremony (`meshanics-server tuf ...`). The codes live in the
// server's one error table (server/src/errors.ts); TufError narrows MeshError to them.
// Each refusal happens before anything is written, so the repository is unchanged.
import { ERROR_TABLE, MeshError } from '../errors.js';

export type TufErrorCode =
  | 'MESH_ERR_TUF_IMPORT_INVALID'
  | 'MESH_ERR_TUF_IMPORT_VERSION'
  | 'MESH_ERR_TUF_IMPORT_EXPIRED'
  | 'MESH_ERR_TUF_IMPORT_SIGNATURE'
  | 'MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE'
  | 'MESH_ERR_TUF_IMPORT_ONLINE_KEYS'
  | 'MESH_ERR_TUF_IMPORT_DELEGATION'
  | 'MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED'
  | 'MESH_ERR_TUF_IMPORT_INTENT_UNSIGNED'
  | 'MESH_ERR_TUF_KEY_EXISTS'
  | 'MESH_ERR_TUF_KEY_UNREADABLE'
  | 'MESH_ERR_TUF_KEY_NOT_LISTED'
  | 'MESH_ERR_TUF_MERGE_MISMATCH';

export const TUF_ERROR_TABLE = Object.freeze(
  Object.fromEntries(
    Object.entries(ERROR_TABLE)
      .filter(([code]) => code.startsWith('MESH_ERR_TUF_IMPORT_') || code.startsWith('MESH_ERR_TUF_KEY_') || code.startsWith('MESH_ERR_TUF_MERGE_'))
      .map(([code, entry]) => [code, entry.summary]),
  ) as Record<TufErrorCode, string>,
);

export class TufError extends MeshError {
  declare readonly code: TufErrorCode;
  constructor(code: TufErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, message, options);
  }
}

export function isTufError(err: unknown, code?: TufErrorCode): err is TufError {
  return err instanceof TufError && (code === undefined || err.code === code);
}
