#!/usr/bin/env node
// meshanics-server: thin wrappers over the exported functions. Exit codes: 0 ok, 1 runtime
// error, 2 usage error. Results go to stdout as JSON; logs are JSON lines (stdout for
// `serve`, which tests parse, stderr for one-shot commands so their stdout stays one document).
// Command modules import everything heavy (gRPC, x509, SQLite, TUF) only when they run, so
// `--help` and usage errors answer at once.
import { parseArgs } from 'node:util';
import { COMMON_HELP, COMMON_OPTIONS, PROG, UsageError, type Command, type Values } from './cli/args.js';
import { ARTIFACT_COMMANDS } from './cli/artifact-commands.js';
import { DEVICE_COMMANDS } from './cli/device-commands.js';
import { ENROLL_TOKEN_COMMANDS } from './cli/enroll-token-commands.js';
import { LOGS_COMMANDS } from './cli/logs-commands.js';
import { SERVE_COMMANDS } from './cli/serve-commands.js';
import { AUDIT_COMMANDS } from './cli/audit-commands.js';
import { APIKEY_COMMANDS } from './cli/apikey-commands.js';
import { GROUP_COMMANDS, ROLLOUT_COMMANDS } from './cli/rollout-commands.js';
import { PLUGIN_SCHEMA_COMMANDS } from './cli/plugin-schema-commands.js';
import { TUF_COMMANDS } from './cli/tuf-commands.js';
import { TUF_ROTATE_COMMANDS } from './cli/tuf-rotate-commands.js';
import { BACKUP_COMMANDS } from './cli/backup-commands.js';
import { MeshError } from './errors.js';

const COMMANDS: Command[] = [
  ...SERVE_COMMANDS,
  ...ENROLL_TOKEN_COMMANDS,
  ...DEVICE_COMMANDS,
  ...LOGS_COMMANDS,
  ...ARTIFACT_COMMANDS,
  ...GROUP_COMMANDS,
  ...ROLLOUT_COMMANDS,
  ...AUDIT_COMMANDS,
  ...APIKEY_COMMANDS,
  ...PLUGIN_SCHEMA_COMMANDS,
  ...TUF_COMMANDS,
  ...TUF_ROTATE_COMMANDS,
  ...BACKUP_COMMANDS,
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
      throw new UsageError(max === 0 ? `unexpected argument "${parsed.positionals[0]}"` : `expected ${min === max ? min : `${min}-${max}`} argument(s)`, command.name);
    }
    const code = await command.run(parsed.values, parsed.positionals, command);
    return typeof code === 'number' ? code : 0;
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
