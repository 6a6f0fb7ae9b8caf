// The one error table of @meshanics/server. Codes are stable: operators grep logs for them,
// agents branch on them, and HTTP surfaces (enrollment now, the REST API later) map `kind` to a
// status through `httpStatusFor`, so one problem gets one status everywhere.

export type ErrorKind =
  'invalid' | 'unauthenticated' | 'forbidden' | 'not_found' | 'method_not_allowed' | 'conflict' | 'too_large' | 'too_many_requests' | 'unavailable' | 'internal';

const HTTP_STATUS: Record<ErrorKind, number> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  too_large: 413,
  too_many_requests: 429,
  unavailable: 503,
  internal: 500,
};

export function httpStatusFor(kind: ErrorKind): number {
  return HTTP_STATUS[kind];
}

export const ERROR_TABLE = {
  MESH_ERR_INTERNAL: { kind: 'internal', summary: 'An unexpected server error (details are in the server log only)' },
  MESH_ERR_CONFIG_INVALID: { kind: 'invalid', summary: 'A server option is invalid' },
  MESH_ERR_CONFIG_TRUST_DOMAIN_MISMATCH: {
    kind: 'conflict',
    summary: 'The data dir was initialized with another trust domain (issued certificates would stop matching)',
  },
  MESH_ERR_CONFIG_DATABASE_MISMATCH: {
    kind: 'conflict',
    summary: 'The data dir keeps its database on another engine (SQLite file or PostgreSQL URL) than the one given',
  },
  MESH_ERR_LISTEN_FAILED: { kind: 'unavailable', summary: 'A listener could not bind its address' },
  MESH_ERR_WORKER_FAILED: {
    kind: 'unavailable',
    summary: 'serve --workers: a worker ended before it was listening, or kept ending after it was (its own error is logged above)',
  },
  MESH_ERR_DATADIR_NOT_INITIALIZED: { kind: 'not_found', summary: 'The data dir has not been initialized' },
  MESH_ERR_DATADIR_CORRUPT: { kind: 'internal', summary: 'A file in the data dir is unreadable or inconsistent' },
  MESH_ERR_BACKUP_TARGET_NOT_EMPTY: { kind: 'conflict', summary: 'restore refuses a data dir that is not empty' },
  MESH_ERR_BACKUP_INVALID: { kind: 'invalid', summary: 'A backup archive is unreadable, has no valid manifest, or a file does not match its hash' },
  MESH_ERR_STORE_SCHEMA_TOO_NEW: { kind: 'internal', summary: 'The database was migrated by a newer server' },
  MESH_ERR_STORE_MIGRATION_FAILED: { kind: 'internal', summary: 'A database migration failed' },
  MESH_ERR_STORE_UNAVAILABLE: { kind: 'unavailable', summary: 'The database cannot be reached' },
  MESH_ERR_PKI_INVALID_IDENTITY: { kind: 'invalid', summary: 'The device identity is not a valid fleet/name pair' },
  MESH_ERR_PKI_INVALID_VALIDITY: { kind: 'invalid', summary: 'The certificate validity is out of range' },
  MESH_ERR_PKI_UNSUPPORTED_KEY: { kind: 'invalid', summary: 'The device public key type is not supported' },
  MESH_ERR_DEVICE_NOT_FOUND: { kind: 'not_found', summary: 'No such device' },
  MESH_ERR_DEVICE_DECOMMISSIONED: { kind: 'forbidden', summary: 'The device has been decommissioned' },
  MESH_ERR_DEVICE_UNSUPPORTED_KIND: { kind: 'conflict', summary: 'The device did not advertise this artifact kind in Register' },
  MESH_ERR_DEVICE_ARCHITECTURE_MISMATCH: { kind: 'conflict', summary: "An agent package is for another architecture than the device's (its Register hardware profile)" },
  MESH_ERR_ARTIFACT_INVALID_NAME: { kind: 'invalid', summary: 'The artifact name is invalid' },
  MESH_ERR_ARTIFACT_INVALID_VERSION: { kind: 'invalid', summary: 'The artifact version is invalid' },
  MESH_ERR_ARTIFACT_UNKNOWN_KIND: { kind: 'invalid', summary: 'No artifact plugin handles this kind' },
  MESH_ERR_ARTIFACT_INVALID_SPEC: { kind: 'invalid', summary: 'The artifact spec does not match its schema' },
  MESH_ERR_ARTIFACT_FILE_UNREADABLE: { kind: 'invalid', summary: 'The artifact file cannot be read' },
  MESH_ERR_ARTIFACT_OUT_OF_BOUNDS: {
    kind: 'invalid',
    summary: 'A value that would go into signed TUF metadata is outside the bounds every device can verify (depth, size, integers, Unicode)',
  },
  MESH_ERR_ARTIFACT_PACKAGE_MISMATCH: { kind: 'invalid', summary: "An agent package's own version is not the artifact version (or it is not an agent package)" },
  MESH_ERR_ARTIFACT_INTENT_UNSIGNED: { kind: 'invalid', summary: 'A target to sign carries no custom.meshanics {kind, spec}, which agents require (signed intent)' },
  MESH_ERR_ARTIFACT_CONFLICT: { kind: 'conflict', summary: 'This artifact name and version already exist' },
  MESH_ERR_ARTIFACT_NOT_FOUND: { kind: 'not_found', summary: 'No such artifact version' },
  MESH_ERR_ARTIFACT_INVALID_FLEET: { kind: 'invalid', summary: 'The artifact fleet is neither a fleet name nor * (every fleet)' },
  MESH_ERR_ARTIFACT_NAME_TAKEN: { kind: 'conflict', summary: 'The artifact name belongs to another fleet (names are unique across fleets)' },
  MESH_ERR_ARTIFACT_FLEET_MISMATCH: { kind: 'conflict', summary: "The artifact belongs to another fleet than the device's" },
  MESH_ERR_ARTIFACT_HELD: { kind: 'conflict', summary: 'A rollout or a device still holds the artifact version: it cannot be withdrawn' },
  MESH_ERR_TUF_METADATA_INVALID: { kind: 'internal', summary: 'The TUF repository metadata on disk is invalid' },
  MESH_ERR_TUF_CANDIDATE_UNVERIFIABLE: { kind: 'invalid', summary: 'The metadata this change would sign does not verify with the device TUF client; nothing was changed' },
  MESH_ERR_TUF_SIGNING_FAILED: { kind: 'internal', summary: 'Signing TUF metadata failed' },
  MESH_ERR_TUF_ROTATION_PENDING: {
    kind: 'conflict',
    summary: 'An online-key rotation is already staged (or already named by trusted metadata); import, re-export or abandon it first',
  },
  MESH_ERR_TUF_ROTATION_NONE: { kind: 'invalid', summary: 'No online-key rotation is staged, or the repository cannot have one yet' },
  MESH_ERR_PROBE_UNKNOWN_TYPE: { kind: 'invalid', summary: 'No probe plugin handles this type' },
  MESH_ERR_PROBE_INVALID: { kind: 'invalid', summary: 'The probe does not match its schema' },
  MESH_ERR_PLUGIN_SCHEMA_INVALID: { kind: 'invalid', summary: 'A custom plugin schema module cannot be added' },
  MESH_ERR_PLUGIN_SCHEMA_IN_USE: { kind: 'conflict', summary: 'An upgraded plugin schema rejects the spec of an artifact that is still in flight' },
  MESH_ERR_ASSIGNMENT_NOT_FOUND: { kind: 'not_found', summary: 'No such assignment' },
  // Enrollment and renewal (HTTPS endpoint): the agent branches on these codes.
  MESH_ERR_ENROLL_TOKEN_INVALID_OPTIONS: { kind: 'invalid', summary: 'The enrollment token options are invalid' },
  MESH_ERR_ENROLL_TOKEN_NOT_FOUND: { kind: 'not_found', summary: 'No enrollment token with this id' },
  MESH_ERR_ENROLL_TOKEN_UNKNOWN: { kind: 'unauthenticated', summary: 'The enrollment token is not known to this server' },
  MESH_ERR_ENROLL_TOKEN_REVOKED: { kind: 'unauthenticated', summary: 'The enrollment token has been revoked' },
  MESH_ERR_ENROLL_TOKEN_EXPIRED: { kind: 'unauthenticated', summary: 'The enrollment token has expired' },
  MESH_ERR_ENROLL_TOKEN_EXHAUSTED: { kind: 'unauthenticated', summary: 'The enrollment token has no uses left' },
  MESH_ERR_ENROLL_INVALID_NAME: { kind: 'invalid', summary: 'The device name is not a DNS label' },
  MESH_ERR_ENROLL_NAME_MISMATCH: { kind: 'invalid', summary: 'The enrollment token is bound to another device name' },
  MESH_ERR_ENROLL_NAME_TAKEN: { kind: 'conflict', summary: 'A device with this name already exists in the fleet' },
  MESH_ERR_ENROLL_CSR_INVALID: { kind: 'invalid', summary: 'The CSR is not a PEM PKCS#10 certificate request' },
  MESH_ERR_ENROLL_CSR_SIGNATURE: { kind: 'invalid', summary: 'The CSR signature does not verify with its own public key' },
  MESH_ERR_ENROLL_UNSUPPORTED_KEY: { kind: 'invalid', summary: 'The CSR key type is not supported (ECDSA P-256/P-384 or Ed25519)' },
  MESH_ERR_ENROLL_KEY_REUSED: { kind: 'invalid', summary: 'A renewal CSR must carry a new key pair, not the current one' },
  MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED: { kind: 'unauthenticated', summary: 'Renewal needs a valid, unexpired client certificate from the device CA' },
  MESH_ERR_ENROLL_DEVICE_UNKNOWN: { kind: 'forbidden', summary: 'The client certificate names no device of this server' },
  MESH_ERR_ENROLL_BAD_REQUEST: { kind: 'invalid', summary: 'The request body is not the expected JSON object' },
  MESH_ERR_ENROLL_BODY_TOO_LARGE: { kind: 'too_large', summary: 'The request body is larger than the endpoint accepts' },
  MESH_ERR_ENROLL_NOT_FOUND: { kind: 'not_found', summary: 'No such enrollment endpoint' },
  MESH_ERR_ENROLL_METHOD_NOT_ALLOWED: { kind: 'method_not_allowed', summary: 'The enrollment endpoints accept POST only' },
  MESH_ERR_LOGS_INVALID_REQUEST: { kind: 'invalid', summary: 'The log request options are invalid' },
  MESH_ERR_LOGS_REQUEST_NOT_FOUND: { kind: 'not_found', summary: 'No such log request' },
  MESH_ERR_LOGS_NOT_UPLOADED: { kind: 'conflict', summary: 'The device has not uploaded this log bundle yet' },
  // Groups, rollouts and the audit trail.
  MESH_ERR_GROUP_INVALID: { kind: 'invalid', summary: 'The group name or its device list is invalid' },
  MESH_ERR_GROUP_CONFLICT: { kind: 'conflict', summary: 'A group with this name already exists in the fleet' },
  MESH_ERR_GROUP_NOT_FOUND: { kind: 'not_found', summary: 'No such group in the fleet' },
  MESH_ERR_ROLLOUT_INVALID: { kind: 'invalid', summary: 'The rollout request is invalid' },
  MESH_ERR_ROLLOUT_INVALID_STRATEGY: { kind: 'invalid', summary: 'The rollout strategy is invalid' },
  MESH_ERR_ROLLOUT_NO_DEVICES: { kind: 'invalid', summary: 'The group resolves to no device that can take the rollout' },
  MESH_ERR_ROLLOUT_DEVICE_BUSY: { kind: 'conflict', summary: 'A device is already in an active rollout of this artifact name' },
  MESH_ERR_ROLLOUT_NOT_FOUND: { kind: 'not_found', summary: 'No such rollout' },
  MESH_ERR_ROLLOUT_INVALID_STATE: { kind: 'conflict', summary: 'The rollout is not in a state that allows this action' },
  // Operator REST API and its keys.
  MESH_ERR_APIKEY_INVALID: { kind: 'invalid', summary: 'The API key options (name, fleet, permissions) are invalid' },
  MESH_ERR_APIKEY_CONFLICT: { kind: 'conflict', summary: 'A live API key with this name already exists' },
  MESH_ERR_APIKEY_NOT_FOUND: { kind: 'not_found', summary: 'No API key with this id' },
  MESH_ERR_API_INVALID: { kind: 'invalid', summary: 'The request does not match the route schema' },
  MESH_ERR_API_UNAUTHENTICATED: { kind: 'unauthenticated', summary: 'No API key, or an unknown or revoked one' },
  MESH_ERR_API_FORBIDDEN: { kind: 'forbidden', summary: 'The API key lacks the permission this route needs' },
  MESH_ERR_API_NOT_FOUND: { kind: 'not_found', summary: "No such route or resource (or it is outside the key's fleet)" },
  MESH_ERR_API_TOO_LARGE: { kind: 'too_large', summary: 'The upload is larger than the server accepts' },
  MESH_ERR_API_NOT_READY: { kind: 'unavailable', summary: 'The server cannot serve requests yet (database or metadata unavailable)' },
  MESH_ERR_API_MULTIPART_INVALID: { kind: 'invalid', summary: 'The upload is not a well-formed multipart/form-data body' },
  MESH_ERR_API_TOO_MANY_STREAMS: { kind: 'too_many_requests', summary: 'The API key already holds as many open event streams as the server allows' },
  MESH_ERR_API_AUTH_RATE_LIMITED: { kind: 'too_many_requests', summary: 'Too many failed API key attempts from this address; retry after the time given' },
  MESH_ERR_API_TLS_INVALID: { kind: 'invalid', summary: 'The REST API certificate or key cannot be read or do not match' },
  MESH_ERR_API_REFUSED: {
    kind: 'invalid',
    summary: "The HTTP layer refused the request before a route saw it (unparseable JSON, a media type no route takes); the answer keeps that layer's status",
  },
  // Refusals of the offline TUF key ceremony (`meshanics-server tuf ...`): each happens
  // before anything is written, so the repository is unchanged.
  MESH_ERR_TUF_IMPORT_INVALID: { kind: 'invalid', summary: 'The file is not valid TUF metadata of the expected role, or breaks a rule of this repository' },
  MESH_ERR_TUF_IMPORT_VERSION: { kind: 'invalid', summary: 'The imported version is not exactly the current version + 1' },
  MESH_ERR_TUF_IMPORT_EXPIRED: { kind: 'invalid', summary: 'The imported metadata has already expired' },
  MESH_ERR_TUF_IMPORT_SIGNATURE: { kind: 'invalid', summary: 'The imported metadata is not signed by a threshold of the keys that must sign it' },
  MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE: { kind: 'invalid', summary: 'The new root is not signed by a threshold of the current root keys (spec 5.3.4)' },
  MESH_ERR_TUF_IMPORT_ONLINE_KEYS: { kind: 'invalid', summary: 'The new root does not name the snapshot/timestamp keys this server holds' },
  MESH_ERR_TUF_IMPORT_DELEGATION: { kind: 'invalid', summary: 'The targets delegation is not a terminating, narrow slice delegated to the server publisher key' },
  MESH_ERR_TUF_IMPORT_INTENT_UNSIGNED: { kind: 'invalid', summary: 'The targets file lists targets without a signed custom.meshanics {kind, spec}, which agents refuse' },
  MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED: { kind: 'invalid', summary: 'The new root changes the targets key: import the targets version signed by it together' },
  MESH_ERR_TUF_KEY_EXISTS: { kind: 'invalid', summary: 'A key file already exists at the output path; keys are never overwritten' },
  MESH_ERR_TUF_KEY_UNREADABLE: { kind: 'invalid', summary: 'A key or key-export file cannot be read' },
  MESH_ERR_TUF_KEY_NOT_LISTED: { kind: 'invalid', summary: 'The signing key is not one the root lists for the role of the metadata being signed' },
  MESH_ERR_TUF_MERGE_MISMATCH: { kind: 'invalid', summary: 'The files to merge do not hold the same signed metadata (or disagree on a signature)' },
} as const satisfies Record<string, { kind: ErrorKind; summary: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export class MeshError extends Error {
  override readonly name = 'MeshError';
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  /** Machine-readable extras (e.g. every schema violation), safe to show to the operator. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.kind = ERROR_TABLE[code].kind;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

export function isMeshError(err: unknown, code?: ErrorCode): err is MeshError {
  return err instanceof MeshError && (code === undefined || err.code === code);
}

/**
 * A list for an error message: the first MAX items, then how many more, so that a refusal
 * about a 100,000-device group stays a message. The REST API answers `{ error, code }`, never
 * an error's details: the whole lists are for the listings (a group's unresolved names, a rollout's devices).
 */
export function nameSome(items: readonly string[], { max = 10, separator = ', ' } = {}): string {
  return items.slice(0, max).join(separator) + (items.length > max ? `${separator}and ${items.length - max} more` : '');
}
