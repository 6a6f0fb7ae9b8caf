export { TufRepository, TUF_SPEC_VERSION, type NewTarget, type RepositoryVersions, type TufRepositoryPaths, type WriteLock } from './repository.js';
export { LIFETIME_MS, TUF_ROLES, type TufRole, expiresAt, isDueForResigning } from './lifetimes.js';
export { tufPublicKey, type RoleKey } from './keys.js';
