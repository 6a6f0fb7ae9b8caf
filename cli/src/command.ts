// The command table's shape, option parsing (node:util parseArgs) and help text.
import { parseArgs } from 'node:util';
import { ApiClient } from './client.js';
import { normalizeUrl, type ResolvedConfig } from './config.js';
import { CliError, EXIT, EXIT_CODE_HELP, UsageError } from './errors.js';
import type { Out } from './output.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The value's placeholder in help, e.g. FLEET. */
  arg?: string;
  description: string;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Context {
  values: Values;
  positionals: string[];
  json: boolean;
  out: Out;
  config: ResolvedConfig;
  /** The API client; exits 3 when no server or key is configured. */
  api(): ApiClient;
  /** --fleet, MESHANICS_FLEET or the login's fleet; a usage error when required and absent. */
  fleet(): string | undefined;
  requireFleet(): string;
  command: Command;
}

export interface Command {
  /** e.g. ['rollouts', 'create'] */
  path: string[];
  summary: string;
  /** What follows the command name in the usage line, e.g. `ID [--policy keep|revert]`. */
  usage: string;
  description?: string[];
  options?: Record<string, OptionSpec>;
  positionals?: { min: number; max: number };
  examples?: string[];
  run(ctx: Context): Promise<number | void>;
}

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean', description: 'print the API answer as JSON (for scripts) instead of tables' },
  config: { type: 'string', arg: 'FILE', description: 'config file (default ~/.config/meshanics/config.json; env MESHANICS_CONFIG)' },
  server: { type: 'string', arg: 'URL', description: 'the server REST API URL (overrides env MESHANICS_API_URL and the config file)' },
  'ca-file': { type: 'string', arg: 'FILE', description: "trust this CA (PEM) for an https server, e.g. the operator's own (env MESHANICS_CA_FILE, or saved by login)" },
  help: { type: 'boolean', short: 'h', description: 'show help' },
};

export const PAGING_OPTIONS: Record<string, OptionSpec> = {
  limit: { type: 'string', arg: 'N', description: 'page size (default 50, at most 200)' },
  offset: { type: 'string', arg: 'N', description: 'skip the first N' },
  all: { type: 'boolean', description: 'fetch every page' },
};

export const FLEET_OPTION: Record<string, OptionSpec> = {
  fleet: { type: 'string', arg: 'FLEET', description: 'the fleet (default: env MESHANICS_FLEET, or the fleet saved by login)' },
};

export function commandName(c: Command): string {
  return c.path.join(' ');
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.arg ?? 'VALUE'}` : ''}`;
    return [flag, `${o.description}${o.multiple ? ' (repeatable)' : ''}`] as const;
  });
  const w = Math.max(...rows.map(([f]) => f.length));
  return rows.map(([f, d]) => `  ${f.padEnd(w)}  ${d}`);
}

export function commandHelp(c: Command): string {
  const lines = [`Usage: meshanics ${commandName(c)}${c.usage ? ` ${c.usage}` : ''}`, '', c.summary];
  if (c.description?.length) lines.push('', ...c.description);
  if (c.options && Object.keys(c.options).length) lines.push('', 'Options:', ...optionLines(c.options));
  lines.push('', 'Global options:', ...optionLines(GLOBAL_OPTIONS));
  if (c.examples?.length) lines.push('', 'Examples:', ...c.examples.map((e) => `  ${e}`));
  return `${lines.join('\n')}\n`;
}

export function groupHelp(group: string, commands: Command[]): string {
  const own = commands.filter((c) => c.path[0] === group);
  const w = Math.max(...own.map((c) => commandName(c).length));
  return `${[
    `Usage: meshanics ${group} <command> [options]`,
    '',
    'Commands:',
    ...own.map((c) => `  ${commandName(c).padEnd(w)}  ${c.summary}`),
    '',
    `Run "meshanics ${group} <command> --help" for a command's options.`,
  ].join('\n')}\n`;
}

export function mainHelp(commands: Command[]): string {
  const w = Math.max(...commands.map((c) => commandName(c).length));
  return `${[
    'Usage: meshanics <command> [options]',
    '',
    "The Meshanics operator CLI: talks to the server's REST API with an API key",
    '(meshanics login --server URL; or env MESHANICS_API_URL and MESHANICS_API_KEY).',
    '',
    'Commands:',
    ...commands.map((c) => `  ${commandName(c).padEnd(w)}  ${c.summary}`),
    '',
    'Global options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    ...EXIT_CODE_HELP,
    '',
    'Run "meshanics <command> --help" for a command\'s options.',
  ].join('\n')}\n`;
}

export function parseCommandArgs(c: Command, args: string[]): { values: Values; positionals: string[] } {
  const options = { ...GLOBAL_OPTIONS, ...(c.options ?? {}) };
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      options: Object.fromEntries(
        Object.entries(options).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }]),
      ),
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] };
  } catch (err) {
    throw new UsageError(`${(err as Error).message.replace(/\. To specify a positional argument.*$/s, '')}`);
  }
  return parsed;
}

export function checkPositionals(c: Command, positionals: string[]): void {
  const { min, max } = c.positionals ?? { min: 0, max: 0 };
  if (positionals.length < min) throw new UsageError(`missing argument: meshanics ${commandName(c)} ${c.usage}`);
  if (positionals.length > max) throw new UsageError(`unexpected argument "${positionals[max]}": meshanics ${commandName(c)} ${c.usage}`);
}

export function makeContext(c: Command, values: Values, positionals: string[], config: ResolvedConfig, out: Out): Context {
  let client: ApiClient | undefined;
  const ctx: Context = {
    values,
    positionals,
    json: values.json === true,
    out,
    config,
    command: c,
    api() {
      if (client) return client;
      if (!config.url) throw new CliError('no server configured: run "meshanics login --server URL", or set MESHANICS_API_URL', EXIT.AUTH);
      if (!config.apiKey) throw new CliError('no API key configured: run "meshanics login", or set MESHANICS_API_KEY', EXIT.AUTH);
      client = new ApiClient(normalizeUrl(config.url), config.apiKey);
      return client;
    },
    fleet() {
      return str(values, 'fleet') ?? config.fleet;
    },
    requireFleet() {
      const f = ctx.fleet();
      if (!f) throw new UsageError(`--fleet is required (or set MESHANICS_FLEET, or log in with a key bound to one fleet): meshanics ${commandName(c)} ${c.usage}`);
      return f;
    },
  };
  return ctx;
}

// --- value helpers

export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function requiredStr(ctx: Context, name: string): string {
  const v = str(ctx.values, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required: meshanics ${commandName(ctx.command)} ${ctx.command.usage}`);
  return v;
}

/** A comma-separated option value: its items, trimmed, empty ones dropped. */
export function csv(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export function intOpt(values: Values, name: string, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, not "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
}

export function paging(values: Values): { limit?: number; offset?: number; all?: boolean } {
  const limit = intOpt(values, 'limit', { min: 1, max: 200 });
  const offset = intOpt(values, 'offset');
  return { ...(limit !== undefined ? { limit } : {}), ...(offset !== undefined ? { offset } : {}), ...(values.all === true ? { all: true } : {}) };
}

/** `fleet/name`, or `name` with --fleet (or the default fleet). */
export function deviceRef(ctx: Context, ref: string): { fleet: string; name: string } {
  const slash = ref.indexOf('/');
  if (slash > 0) {
    const fleet = ref.slice(0, slash);
    const name = ref.slice(slash + 1);
    if (!name || name.includes('/')) throw new UsageError(`a device is FLEET/NAME or NAME with --fleet, not "${ref}"`);
    return { fleet, name };
  }
  return { fleet: ctx.requireFleet(), name: ref };
}

/** A JSON value given inline or as `@file`. */
export async function jsonArg(name: string, raw: string): Promise<unknown> {
  let text = raw;
  if (raw.startsWith('@')) {
    const { readFile } = await import('node:fs/promises');
    try {
      text = await readFile(raw.slice(1), 'utf8');
    } catch (err) {
      throw new UsageError(`--${name}: cannot read ${raw.slice(1)}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--${name} is not valid JSON: ${(err as Error).message}`);
  }
}
