#!/usr/bin/env node
// meshanics-server: thin wrappers over the exported functions. Exit codes: 0 ok, 1 runtime
// error, 2 usage error. Results go to stdout as JSON; logs are JSON lines (stdout for
// `serve`, which tests parse, stderr for one-shot commands so their stdout stays one document).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PRIVATE_FILE_MODE, ensurePrivateDir, writeFileAtomic } from './atomic-file.js';
import type { MeshanicsContext } from './data-dir.js';
import {
  DEFAULT_ARTIFACT_LISTEN,
  DEFAULT_DEVICE_CERT_DAYS,
  DEFAULT_GRPC_LISTEN,
  DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
  DEFAULT_TRUST_DOMAIN,
  PROBE_DEFAULTS,
} from './defaults.js';
import { MeshError } from './errors.js';
import type { Logger, LoggerOptions } from './log.js';

// Everything heavier (gRPC, x509, SQLite, TUF) is imported by the command that needs it,
// so `--help` and usage errors answer at once.
async function createLogger(options: LoggerOptions): Promise<Logger> {
  return (await import('./log.js')).createLogger(options);
}

const PROG = 'meshanics-server';
const DEFAULT_DATA_DIR = './.meshanics';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

class UsageError extends Error {
  constructor(
    message: string,
    readonly command: string,
  ) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | undefined>;

interface Command {
  /** e.g. "device issue-cert" */
  name: string;
  summary: string;
  usage: string;
  options: Options;
  /** Lines of help describing options, each "  --flag VALUE   text (env VAR, default x)". */
  help: string[];
  positionals?: { min: number; max: number };
  run(values: Values, positionals: string[], command: Command): Promise<void>;
}

const COMMON_OPTIONS: Options = {
  'data-dir': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};
const COMMON_HELP = [
  `  --data-dir DIR         data dir (env MESHANICS_DATA_DIR, default ${DEFAULT_DATA_DIR})`,
  '  --log-level LEVEL      fatal|error|warn|info|debug|trace|silent (env MESHANICS_LOG_LEVEL)',
  '  -h, --help             show this help',
];

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function stringOpt(values: Values, flag: string, envName?: string): string | undefined {
  const v = values[flag];
  if (typeof v === 'string') return v;
  return envName ? env(envName) : undefined;
}

/** Names every missing required flag at once, so one retry fixes them all. */
function requireFlags(values: Values, command: Command, flags: string[]): void {
  const missing = flags.filter((f) => {
    const v = values[f];
    return typeof v !== 'string' || v === '';
  });
  if (missing.length === 1) throw new UsageError(`--${missing[0]} is required`, command.name);
  if (missing.length > 1) throw new UsageError(`missing required options: ${missing.map((f) => `--${f}`).join(', ')}`, command.name);
}

function required(values: Values, flag: string, command: Command, envName?: string): string {
  const v = stringOpt(values, flag, envName);
  if (v === undefined || v === '') throw new UsageError(`--${flag} is required`, command.name);
  return v;
}

function intOpt(values: Values, flag: string, command: Command, fallback: number, envName?: string): number {
  const raw = stringOpt(values, flag, envName);
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`--${flag} must be an integer, got "${raw}"`, command.name);
  return Number(raw);
}

function jsonOpt(values: Values, flag: string, command: Command): string | undefined {
  const raw = stringOpt(values, flag);
  if (raw === undefined) return undefined;
  try {
    JSON.parse(raw);
  } catch (err) {
    throw new UsageError(`--${flag} is not valid JSON: ${(err as Error).message}`, command.name);
  }
  return raw;
}

function logLevel(values: Values, command: Command, fallback: (typeof LOG_LEVELS)[number]): (typeof LOG_LEVELS)[number] {
  const raw = stringOpt(values, 'log-level', 'MESHANICS_LOG_LEVEL') ?? fallback;
  if (!(LOG_LEVELS as readonly string[]).includes(raw)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`, command.name);
  }
  return raw as (typeof LOG_LEVELS)[number];
}

function dataDir(values: Values): string {
  return stringOpt(values, 'data-dir', 'MESHANICS_DATA_DIR') ?? DEFAULT_DATA_DIR;
}

function print(result: unknown): void {
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}

async function withDataDir<T>(values: Values, command: Command, fn: (ctx: MeshanicsContext) => Promise<T> | T): Promise<T> {
  const logger = await createLogger({ fd: 2, level: logLevel(values, command, 'warn') });
  const { initDataDir, isDataDirInitialized, openDataDir } = await import('./data-dir.js');
  const dir = dataDir(values);
  // A fresh data dir is initialized first, so a first `device issue-cert` needs no `init`.
  const ctx = isDataDirInitialized(dir) ? openDataDir({ dataDir: dir, logger }) : await initDataDir({ dataDir: dir, logger });
  try {
    return await fn(ctx);
  } finally {
    ctx.close();
  }
}

function hostnames(values: Values): string[] {
  const flags = values.hostname;
  if (Array.isArray(flags) && flags.length > 0) return flags;
  return (env('MESHANICS_HOSTNAMES') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function waitForShutdownSignal(logger: Logger): Promise<NodeJS.Signals> {
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

const COMMANDS: Command[] = [
  {
    name: 'serve',
    summary: 'run the device gRPC API and the artifact server (initializes the data dir on first start)',
    usage: 'serve [options]',
    options: {
      'grpc-listen': { type: 'string' },
      'artifact-listen': { type: 'string' },
      hostname: { type: 'string', multiple: true },
      'trust-domain': { type: 'string' },
      'heartbeat-interval': { type: 'string' },
    },
    help: [
      `  --grpc-listen HOST:PORT      device API address (env MESHANICS_GRPC_LISTEN, default ${DEFAULT_GRPC_LISTEN}; port 0 = any)`,
      `  --artifact-listen HOST:PORT  artifact server address (env MESHANICS_ARTIFACT_LISTEN, default ${DEFAULT_ARTIFACT_LISTEN})`,
      '  --hostname NAME              extra DNS name or IP for the server certificate, repeatable (env MESHANICS_HOSTNAMES, comma-separated)',
      `  --trust-domain DOMAIN        SPIFFE trust domain, fixed at first start (env MESHANICS_TRUST_DOMAIN, default ${DEFAULT_TRUST_DOMAIN})`,
      `  --heartbeat-interval SECS    heartbeat interval told to devices (env MESHANICS_HEARTBEAT_INTERVAL, default ${DEFAULT_HEARTBEAT_INTERVAL_SECONDS})`,
    ],
    async run(values, _positionals, command) {
      const logger = await createLogger({ fd: 1, level: logLevel(values, command, 'info') });
      const { startServer } = await import('./server.js');
      const trustDomain = stringOpt(values, 'trust-domain', 'MESHANICS_TRUST_DOMAIN');
      const server = await startServer({
        dataDir: dataDir(values),
        grpcListen: stringOpt(values, 'grpc-listen', 'MESHANICS_GRPC_LISTEN') ?? DEFAULT_GRPC_LISTEN,
        artifactListen: stringOpt(values, 'artifact-listen', 'MESHANICS_ARTIFACT_LISTEN') ?? DEFAULT_ARTIFACT_LISTEN,
        hostnames: hostnames(values),
        ...(trustDomain !== undefined ? { trustDomain } : {}),
        heartbeatIntervalSeconds: intOpt(values, 'heartbeat-interval', command, DEFAULT_HEARTBEAT_INTERVAL_SECONDS, 'MESHANICS_HEARTBEAT_INTERVAL'),
        logger,
      });
      await waitForShutdownSignal(logger);
      await server.close();
    },
  },
  {
    name: 'init',
    summary: 'initialize the data dir: device CA, server certificate, TUF repository (idempotent)',
    usage: 'init [options]',
    options: { hostname: { type: 'string', multiple: true }, 'trust-domain': { type: 'string' } },
    help: [
      '  --hostname NAME              extra DNS name or IP for the server certificate, repeatable (env MESHANICS_HOSTNAMES)',
      `  --trust-domain DOMAIN        SPIFFE trust domain (env MESHANICS_TRUST_DOMAIN, default ${DEFAULT_TRUST_DOMAIN})`,
    ],
    async run(values, _positionals, command) {
      const trustDomain = stringOpt(values, 'trust-domain', 'MESHANICS_TRUST_DOMAIN');
      const { initDataDir } = await import('./data-dir.js');
      const ctx = await initDataDir({
        dataDir: dataDir(values),
        hostnames: hostnames(values),
        ...(trustDomain !== undefined ? { trustDomain } : {}),
        logger: await createLogger({ fd: 2, level: logLevel(values, command, 'info') }),
      });
      try {
        print({ dataDir: ctx.layout.root, trustDomain: ctx.trustDomain, tuf: ctx.tuf.versions() });
      } finally {
        ctx.close();
      }
    },
  },
  {
    name: 'device issue-cert',
    summary: 'generate a device key, issue its certificate and record the device',
    usage: 'device issue-cert --fleet FLEET --name NAME --out DIR [options]',
    options: {
      fleet: { type: 'string' },
      name: { type: 'string' },
      out: { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean' },
    },
    help: [
      '  --fleet FLEET          fleet of the device (DNS label)',
      '  --name NAME            device name within the fleet (DNS label)',
      '  --out DIR              writes DIR/device.key (0600), device.crt, ca.crt, tuf-root.json',
      `  --days N               certificate validity in days (default ${DEFAULT_DEVICE_CERT_DAYS})`,
      '  --force                overwrite an existing DIR/device.key',
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'name', 'out']);
      const fleet = required(values, 'fleet', command);
      const name = required(values, 'name', command);
      const out = path.resolve(required(values, 'out', command));
      const days = intOpt(values, 'days', command, DEFAULT_DEVICE_CERT_DAYS);
      const files = {
        key: path.join(out, 'device.key'),
        cert: path.join(out, 'device.crt'),
        ca: path.join(out, 'ca.crt'),
        tufRoot: path.join(out, 'tuf-root.json'),
      };
      if (fs.existsSync(files.key) && values.force !== true) {
        throw new UsageError(`${files.key} exists; pass --force to replace it`, command.name);
      }
      const { provisionDevice } = await import('./devices.js');
      const creds = await withDataDir(values, command, (ctx) => provisionDevice(ctx, { fleet, name, days, actor: 'operator:cli' }));
      ensurePrivateDir(out);
      writeFileAtomic(files.key, creds.keyPem, PRIVATE_FILE_MODE);
      writeFileAtomic(files.cert, creds.certPem);
      writeFileAtomic(files.ca, creds.caPem);
      writeFileAtomic(files.tufRoot, creds.tufRootJson);
      print({
        spiffeId: creds.spiffeId,
        fleet,
        name,
        serialNumber: creds.serialNumber,
        notBefore: creds.notBefore,
        notAfter: creds.notAfter,
        files,
      });
    },
  },
  {
    name: 'device decommission',
    summary: 'refuse a device on the device API and the artifact server from now on',
    usage: 'device decommission --fleet FLEET --name NAME',
    options: { fleet: { type: 'string' }, name: { type: 'string' } },
    help: ['  --fleet FLEET          fleet of the device', '  --name NAME            device name within the fleet'],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'name']);
      const fleet = required(values, 'fleet', command);
      const name = required(values, 'name', command);
      const { decommissionDevice } = await import('./devices.js');
      await withDataDir(values, command, (ctx) => decommissionDevice(ctx, { fleet, name, actor: 'operator:cli' }));
      print({ fleet, name, decommissioned: true });
    },
  },
  {
    name: 'artifact publish',
    summary: 'sign a file into the TUF repository as an artifact version',
    usage: 'artifact publish FILE --name NAME --version VERSION --kind KIND [--spec JSON]',
    options: { name: { type: 'string' }, version: { type: 'string' }, kind: { type: 'string' }, spec: { type: 'string' } },
    help: [
      '  --name NAME            artifact name',
      '  --version VERSION      artifact version (immutable once published)',
      '  --kind KIND            artifact kind (e.g. model)',
      '  --spec JSON            kind-specific spec, validated by the kind plugin schema (default {})',
    ],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      requireFlags(values, command, ['name', 'version', 'kind']);
      const input = {
        file: positionals[0]!,
        name: required(values, 'name', command),
        version: required(values, 'version', command),
        kind: required(values, 'kind', command),
        spec: jsonOpt(values, 'spec', command) ?? '{}',
        actor: 'operator:cli',
      };
      const { publishArtifact } = await import('./artifacts.js');
      print(await withDataDir(values, command, (ctx) => publishArtifact(ctx, input)));
    },
  },
  {
    name: 'assign',
    summary: 'assign an artifact version to a device (supersedes its current one of that name)',
    usage: 'assign --fleet FLEET --device NAME --artifact NAME@VERSION --probe-type TYPE --probe-spec JSON [options]',
    options: {
      fleet: { type: 'string' },
      device: { type: 'string' },
      artifact: { type: 'string' },
      'probe-type': { type: 'string' },
      'probe-spec': { type: 'string' },
      'probe-timeout': { type: 'string' },
      'probe-attempts': { type: 'string' },
      'probe-initial-delay': { type: 'string' },
    },
    help: [
      '  --fleet FLEET               fleet of the device',
      '  --device NAME               device name',
      '  --artifact NAME@VERSION     published artifact version',
      '  --probe-type TYPE           health probe type (e.g. file)',
      '  --probe-spec JSON           probe spec, validated by the probe plugin schema',
      `  --probe-timeout SECS        1-300 (default ${PROBE_DEFAULTS.timeoutSeconds})`,
      `  --probe-attempts N          1-10 (default ${PROBE_DEFAULTS.attempts})`,
      `  --probe-initial-delay SECS  0-3600 (default ${PROBE_DEFAULTS.initialDelaySeconds})`,
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'device', 'artifact', 'probe-type', 'probe-spec']);
      const ref = required(values, 'artifact', command);
      const at = ref.indexOf('@');
      if (at <= 0 || at === ref.length - 1) throw new UsageError(`--artifact must be NAME@VERSION, got "${ref}"`, command.name);
      const input = {
        fleet: required(values, 'fleet', command),
        device: required(values, 'device', command),
        artifact: ref.slice(0, at),
        version: ref.slice(at + 1),
        probe: {
          type: required(values, 'probe-type', command),
          spec: jsonOpt(values, 'probe-spec', command)!,
          timeoutSeconds: intOpt(values, 'probe-timeout', command, PROBE_DEFAULTS.timeoutSeconds),
          attempts: intOpt(values, 'probe-attempts', command, PROBE_DEFAULTS.attempts),
          initialDelaySeconds: intOpt(values, 'probe-initial-delay', command, PROBE_DEFAULTS.initialDelaySeconds),
        },
        actor: 'operator:cli',
      };
      const { createAssignment } = await import('./assignments.js');
      const created = await withDataDir(values, command, (ctx) => createAssignment(ctx, input));
      print({ assignmentId: created.assignmentId, superseded: created.superseded });
    },
  },
  {
    name: 'assignment show',
    summary: 'show an assignment, its state and its status reports',
    usage: 'assignment show ID',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { getAssignment } = await import('./assignments.js');
      print(await withDataDir(values, command, (ctx) => getAssignment(ctx, positionals[0]!)));
    },
  },
];

function commandHelp(c: Command): string {
  return [`Usage: ${PROG} ${c.usage}`, '', c.summary, '', 'Options:', ...c.help, ...COMMON_HELP, ''].join('\n');
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    `Usage: ${PROG} <command> [options]`,
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    `Run "${PROG} <command> --help" for a command's options.`,
    '',
  ].join('\n');
}

function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  for (const c of COMMANDS) {
    const words = c.name.split(' ');
    if (words.every((w, i) => argv[i] === w)) return { command: c, rest: argv.slice(words.length) };
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  const found = findCommand(argv);
  if (!found) {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      process.stdout.write(mainHelp());
      return argv.length === 0 ? 2 : 0;
    }
    process.stderr.write(`${PROG}: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${mainHelp()}`);
    return 2;
  }
  const { command, rest } = found;
  try {
    let parsed: { values: Values; positionals: string[] };
    try {
      parsed = parseArgs({ args: rest, options: { ...COMMON_OPTIONS, ...command.options }, allowPositionals: true, strict: true }) as {
        values: Values;
        positionals: string[];
      };
    } catch (err) {
      throw new UsageError((err as Error).message, command.name);
    }
    if (parsed.values.help === true) {
      process.stdout.write(commandHelp(command));
      return 0;
    }
    const { min, max } = command.positionals ?? { min: 0, max: 0 };
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      throw new UsageError(
        max === 0 ? `unexpected argument "${parsed.positionals[0]}"` : `expected ${min === max ? min : `${min}-${max}`} argument(s)`,
        command.name,
      );
    }
    await command.run(parsed.values, parsed.positionals, command);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${PROG} ${err.command}: ${err.message}\nRun "${PROG} ${err.command} --help" for usage.\n`);
      return 2;
    }
    if (err instanceof MeshError) {
      process.stderr.write(`${PROG} ${command.name}: ${err.code}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`${PROG} ${command.name}: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

// Until main settles, an event loop that drains early (a lost promise) must not look like success.
process.exitCode = 1;
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${PROG}: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
