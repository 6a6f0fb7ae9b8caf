// cli/ owns the `meshanics-server` commands, one file per command group, and their shared plumbing (this file);
// ../cli.ts dispatches. A command imports the folder it wraps only when it runs (dynamic import).
// May import: any folder, and server.ts (serve). Nothing imports cli/ but ../cli.ts.
//
// Shared plumbing of the CLI commands: flag parsing, JSON output, opening the data dir.
import type { ParseArgsConfig } from 'node:util';
import type { MeshanicsContext } from '../config/data-dir.js';
import { PROBE_DEFAULTS } from '../config/defaults.js';
import { parseDurationSeconds } from '../config/durations.js';
import type { Logger, LoggerOptions } from '../observability/log.js';

// Everything heavier (gRPC, x509, SQLite, TUF) is imported by the command that needs it,
// so `--help` and usage errors answer at once.
export async function createLogger(options: LoggerOptions): Promise<Logger> {
  return (await import('../observability/log.js')).createLogger(options);
}

export const PROG = 'meshanics-server';
export const DEFAULT_DATA_DIR = './.meshanics';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export class UsageError extends Error {
  constructor(
    message: string,
    readonly command: string,
  ) {
    super(message);
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** e.g. "device issue-cert" */
  name: string;
  summary: string;
  usage: string;
  options: Options;
  /** Lines of help describing options, each "  --flag VALUE   text (env VAR, default x)". */
  help: string[];
  positionals?: { min: number; max: number };
  /** Resolves to the exit code when it is not 0 (e.g. `audit verify` on a broken chain). */
  run(values: Values, positionals: string[], command: Command): Promise<void | number>;
}

export const COMMON_OPTIONS: Options = {
  'data-dir': { type: 'string' },
  'database-url': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};
export const COMMON_HELP = [
  `  --data-dir DIR         data dir (env MESHANICS_DATA_DIR, default ${DEFAULT_DATA_DIR})`,
  '  --database-url URL     PostgreSQL database, postgres://... (env MESHANICS_DATABASE_URL; default: SQLite in the data dir)',
  '  --log-level LEVEL      fatal|error|warn|info|debug|trace|silent (env MESHANICS_LOG_LEVEL)',
  '  -h, --help             show this help',
];

export function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

export function stringOpt(values: Values, flag: string, envName?: string): string | undefined {
  const v = values[flag];
  if (typeof v === 'string') return v;
  return envName ? env(envName) : undefined;
}

/** Names every missing required flag at once, so one retry fixes them all. */
export function requireFlags(values: Values, command: Command, flags: string[]): void {
  const missing = flags.filter((f) => {
    const v = values[f];
    return typeof v !== 'string' || v === '';
  });
  if (missing.length === 1) throw new UsageError(`--${missing[0]} is required`, command.name);
  if (missing.length > 1) throw new UsageError(`missing required options: ${missing.map((f) => `--${f}`).join(', ')}`, command.name);
}

export function required(values: Values, flag: string, command: Command, envName?: string): string {
  const v = stringOpt(values, flag, envName);
  if (v === undefined || v === '') throw new UsageError(`--${flag} is required`, command.name);
  return v;
}

export function intOpt(values: Values, flag: string, command: Command, fallback: number, envName?: string): number {
  const raw = stringOpt(values, flag, envName);
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`--${flag} must be an integer, got "${raw}"`, command.name);
  return Number(raw);
}

export function jsonOpt(values: Values, flag: string, command: Command): string | undefined {
  const raw = stringOpt(values, flag);
  if (raw === undefined) return undefined;
  try {
    JSON.parse(raw);
  } catch (err) {
    throw new UsageError(`--${flag} is not valid JSON: ${(err as Error).message}`, command.name);
  }
  return raw;
}

export function logLevel(values: Values, command: Command, fallback: (typeof LOG_LEVELS)[number]): (typeof LOG_LEVELS)[number] {
  const raw = stringOpt(values, 'log-level', 'MESHANICS_LOG_LEVEL') ?? fallback;
  if (!(LOG_LEVELS as readonly string[]).includes(raw)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`, command.name);
  }
  return raw as (typeof LOG_LEVELS)[number];
}

export function dataDir(values: Values): string {
  return stringOpt(values, 'data-dir', 'MESHANICS_DATA_DIR') ?? DEFAULT_DATA_DIR;
}

/** The PostgreSQL URL, when the data dir's database lives there. */
export function databaseUrl(values: Values): string | undefined {
  return stringOpt(values, 'database-url', 'MESHANICS_DATABASE_URL');
}

export function print(result: unknown): void {
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}

/** The JSON answer of the commands that are one call on the opened data dir. */
export async function printFromDataDir(values: Values, command: Command, fn: (ctx: MeshanicsContext) => unknown): Promise<void> {
  print(await withDataDir(values, command, fn));
}

export async function withDataDir<T>(values: Values, command: Command, fn: (ctx: MeshanicsContext) => Promise<T> | T): Promise<T> {
  const logger = await createLogger({ fd: 2, level: logLevel(values, command, 'warn') });
  const { initDataDir, isDataDirInitialized, openDataDir } = await import('../config/data-dir.js');
  const dir = dataDir(values);
  // A fresh data dir is initialized first, so a first `device issue-cert` needs no `init`.
  const url = databaseUrl(values);
  const database = url !== undefined ? { databaseUrl: url } : {};
  const ctx = isDataDirInitialized(dir) ? await openDataDir({ dataDir: dir, logger, ...database }) : await initDataDir({ dataDir: dir, logger, ...database });
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

export function hostnames(values: Values): string[] {
  const flags = values.hostname;
  if (Array.isArray(flags) && flags.length > 0) return flags;
  return (env('MESHANICS_HOSTNAMES') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function waitForShutdownSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'shutting down');
      // A second signal while draining means "now".
      process.once('SIGINT', () => process.exit(1));
      process.once('SIGTERM', () => process.exit(1));
      resolve(signal);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}

/** A duration flag ("90s", "30m", "24h", "7d" or plain seconds) in whole seconds. */
export function durationOpt(values: Values, flag: string, command: Command, envName?: string): number | undefined {
  const raw = stringOpt(values, flag, envName);
  if (raw === undefined) return undefined;
  const seconds = parseDurationSeconds(raw);
  if (seconds === undefined) throw new UsageError(`--${flag} must be a duration like 90s, 30m, 24h or 7d, got "${raw}"`, command.name);
  return seconds;
}

/** `--artifact NAME@VERSION`, as `assign` and `rollout create` take it. */
export function artifactRefOpt(values: Values, command: Command): { name: string; version: string } {
  return parseArtifactRef(required(values, 'artifact', command), '--artifact', command);
}

/** NAME@VERSION; `what` names the flag or argument in the usage error. */
export function parseArtifactRef(ref: string, what: string, command: Command): { name: string; version: string } {
  const at = ref.indexOf('@');
  if (at <= 0 || at === ref.length - 1) throw new UsageError(`${what} must be NAME@VERSION, got "${ref}"`, command.name);
  return { name: ref.slice(0, at), version: ref.slice(at + 1) };
}

/** The health-probe flags of `assign` and `rollout create` (--probe-type and --probe-spec are required there). */
export const PROBE_OPTIONS: Options = {
  'probe-type': { type: 'string' },
  'probe-spec': { type: 'string' },
  'probe-timeout': { type: 'string' },
  'probe-attempts': { type: 'string' },
  'probe-initial-delay': { type: 'string' },
};
export const PROBE_HELP = [
  '  --probe-type TYPE           health probe type (e.g. file)',
  '  --probe-spec JSON           probe spec, validated by the probe plugin schema',
  `  --probe-timeout SECS        1-300 (default ${PROBE_DEFAULTS.timeoutSeconds})`,
  `  --probe-attempts N          1-10 (default ${PROBE_DEFAULTS.attempts})`,
  `  --probe-initial-delay SECS  0-3600 (default ${PROBE_DEFAULTS.initialDelaySeconds})`,
];

export function probeOpt(values: Values, command: Command): { type: string; spec: string; timeoutSeconds: number; attempts: number; initialDelaySeconds: number } {
  return {
    type: required(values, 'probe-type', command),
    spec: jsonOpt(values, 'probe-spec', command)!,
    timeoutSeconds: intOpt(values, 'probe-timeout', command, PROBE_DEFAULTS.timeoutSeconds),
    attempts: intOpt(values, 'probe-attempts', command, PROBE_DEFAULTS.attempts),
    initialDelaySeconds: intOpt(values, 'probe-initial-delay', command, PROBE_DEFAULTS.initialDelaySeconds),
  };
}
