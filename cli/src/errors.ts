// Exit codes scripts can rely on, and the errors that carry them.

export const EXIT = {
  /** Success. */
  OK: 0,
  /** The API answered an error not listed below (5xx, 413, ...), the server was unreachable, or a local I/O error. */
  ERROR: 1,
  /** Usage: unknown command or option, a missing or malformed argument, or the server refused the input as invalid (HTTP 400). */
  USAGE: 2,
  /** Authentication or authorization: no key configured, HTTP 401 (unknown or revoked key) or 403 (missing permission). */
  AUTH: 3,
  /** HTTP 404: not found, or outside the key's fleet. */
  NOT_FOUND: 4,
  /** HTTP 409: duplicate, or the action conflicts with the current state (e.g. approving a rollout that waits for nothing). */
  CONFLICT: 5,
  /** `audit verify` / `audit export`: the hash chain is broken. */
  AUDIT_BROKEN: 6,
  /** `rollouts watch`: the rollout halted (it can be resumed). */
  ROLLOUT_HALTED: 7,
  /** `rollouts watch`: the rollout was aborted. */
  ROLLOUT_ABORTED: 8,
} as const;

export const EXIT_CODE_HELP = [
  'Exit codes:',
  '  0  success',
  '  1  API or runtime error (server unreachable, HTTP 5xx, local I/O)',
  '  2  usage error, or input the server refused as invalid (HTTP 400)',
  '  3  authentication or permission error (no key configured, HTTP 401, HTTP 403)',
  "  4  not found (HTTP 404; also anything outside the key's fleet)",
  '  5  conflict (HTTP 409: duplicate, or not possible in the current state)',
  '  6  audit chain broken (audit verify, audit export)',
  '  7  rollout halted (rollouts watch)',
  '  8  rollout aborted (rollouts watch)',
];

/** An error with the exit code it ends the process with. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.ERROR,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.USAGE);
    this.name = 'UsageError';
  }
}

/** The API answered with an error status: `{ "error": "..." }`. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message, exitCodeForStatus(status));
    this.name = 'ApiError';
  }
}

export function exitCodeForStatus(status: number): number {
  switch (status) {
    case 400:
      return EXIT.USAGE;
    case 401:
    case 403:
      return EXIT.AUTH;
    case 404:
      return EXIT.NOT_FOUND;
    case 409:
      return EXIT.CONFLICT;
    default:
      return EXIT.ERROR;
  }
}
