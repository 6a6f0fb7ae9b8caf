// The one error table of @meshanics/server. Codes are stable: operators grep logs for them
// and the REST API (a later issue) maps `kind` to an HTTP status, gRPC maps it to a status code.

export type ErrorKind = 'invalid' | 'not_found' | 'conflict' | 'forbidden' | 'unavailable' | 'internal';

export const ERROR_TABLE = {
  MESH_ERR_CONFIG_INVALID: { kind: 'invalid', summary: 'A server option is invalid' },
  MESH_ERR_CONFIG_TRUST_DOMAIN_MISMATCH: {
    kind: 'conflict',
    summary: 'The data dir was initialized with another trust domain (issued certificates would stop matching)',
  },
  MESH_ERR_LISTEN_FAILED: { kind: 'unavailable', summary: 'A listener could not bind its address' },
  MESH_ERR_DATADIR_NOT_INITIALIZED: { kind: 'not_found', summary: 'The data dir has not been initialized' },
  MESH_ERR_DATADIR_CORRUPT: { kind: 'internal', summary: 'A file in the data dir is unreadable or inconsistent' },
  MESH_ERR_STORE_SCHEMA_TOO_NEW: { kind: 'internal', summary: 'The database was migrated by a newer server' },
  MESH_ERR_STORE_MIGRATION_FAILED: { kind: 'internal', summary: 'A database migration failed' },
  MESH_ERR_PKI_INVALID_IDENTITY: { kind: 'invalid', summary: 'The device identity is not a valid fleet/name pair' },
  MESH_ERR_PKI_INVALID_VALIDITY: { kind: 'invalid', summary: 'The certificate validity is out of range' },
  MESH_ERR_PKI_UNSUPPORTED_KEY: { kind: 'invalid', summary: 'The device public key type is not supported' },
  MESH_ERR_DEVICE_NOT_FOUND: { kind: 'not_found', summary: 'No such device' },
  MESH_ERR_DEVICE_DECOMMISSIONED: { kind: 'forbidden', summary: 'The device has been decommissioned' },
  MESH_ERR_ARTIFACT_INVALID_NAME: { kind: 'invalid', summary: 'The artifact name is invalid' },
  MESH_ERR_ARTIFACT_INVALID_VERSION: { kind: 'invalid', summary: 'The artifact version is invalid' },
  MESH_ERR_ARTIFACT_UNKNOWN_KIND: { kind: 'invalid', summary: 'No artifact plugin handles this kind' },
  MESH_ERR_ARTIFACT_INVALID_SPEC: { kind: 'invalid', summary: 'The artifact spec does not match its schema' },
  MESH_ERR_ARTIFACT_FILE_UNREADABLE: { kind: 'invalid', summary: 'The artifact file cannot be read' },
  MESH_ERR_ARTIFACT_CONFLICT: { kind: 'conflict', summary: 'This artifact name and version already exist' },
  MESH_ERR_ARTIFACT_NOT_FOUND: { kind: 'not_found', summary: 'No such artifact version' },
  MESH_ERR_TUF_METADATA_INVALID: { kind: 'internal', summary: 'The TUF repository metadata on disk is invalid' },
  MESH_ERR_TUF_SIGNING_FAILED: { kind: 'internal', summary: 'Signing TUF metadata failed' },
  MESH_ERR_PROBE_UNKNOWN_TYPE: { kind: 'invalid', summary: 'No probe plugin handles this type' },
  MESH_ERR_PROBE_INVALID: { kind: 'invalid', summary: 'The probe does not match its schema' },
  MESH_ERR_ASSIGNMENT_NOT_FOUND: { kind: 'not_found', summary: 'No such assignment' },
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
