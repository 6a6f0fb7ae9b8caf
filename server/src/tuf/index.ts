// tuf/ owns the server's TUF repository: metadata and targets on disk (repository.ts), role keys (keys.ts),
// lifetimes (lifetimes.ts), the publisher delegation (delegation.ts), the offline key ceremony (offline.ts) and its
// refusals (errors.ts).
// May import: @tufjs/models, @tufjs/canonical-json, config/atomic-file.ts, ../errors.ts. Nothing else of the server;
// publishing (catalog/) reaches the repository through the data dir's context.

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
