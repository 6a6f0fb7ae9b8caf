export {
  TufRepository,
  TUF_SPEC_VERSION,
  ONLINE_KEYS_FORMAT,
  type ImportInput,
  type ImportResult,
  type KeyCustody,
  type NewTarget,
  type OnlineKeysExport,
  type RepositoryVersions,
  type TufRepositoryPaths,
  type WriteLock,
} from './repository.js';
export { LIFETIME_MS, PUBLISHER_ROLE, TUF_ROLES, type SigningRole, type TufRole, expiresAt, isDueForResigning } from './lifetimes.js';
export { tufPublicKey, type RoleKey } from './keys.js';
export { DEFAULT_DELEGATED_PATHS } from './delegation.js';
export { TufError, isTufError, TUF_ERROR_TABLE, type TufErrorCode } from './errors.js';
