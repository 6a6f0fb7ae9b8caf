// Where the CLI finds the server and its API key: flags, then MESHANICS_API_URL /
// MESHANICS_API_KEY / MESHANICS_FLEET, then the config file `login` wrote (mode 0600).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CliError, EXIT } from './errors.js';

export interface StoredConfig {
  /** The server's REST API base URL, e.g. http://127.0.0.1:7480 */
  url?: string;
  apiKey?: string;
  /** Default --fleet (set by login for a key bound to one fleet, or by `login --fleet`). */
  fleet?: string;
  /** A CA (PEM file) trusted for an https server besides the public ones (`login --ca-file`). */
  caFile?: string;
}

export interface ResolvedConfig {
  url: string | undefined;
  apiKey: string | undefined;
  fleet: string | undefined;
  caFile: string | undefined;
  file: string;
}

/** `$XDG_CONFIG_HOME/meshanics/config.json`, default `~/.config/meshanics/config.json`. */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(os.homedir(), '.config');
  return path.join(base, 'meshanics', 'config.json');
}

export function readConfigFile(file: string): StoredConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    const c = parsed as Record<string, unknown>;
    return {
      ...(typeof c.url === 'string' ? { url: c.url } : {}),
      ...(typeof c.apiKey === 'string' ? { apiKey: c.apiKey } : {}),
      ...(typeof c.fleet === 'string' ? { fleet: c.fleet } : {}),
      ...(typeof c.caFile === 'string' ? { caFile: c.caFile } : {}),
    };
  } catch (err) {
    throw new CliError(`${file} is not valid config JSON: ${(err as Error).message}`);
  }
}

/** Writes the config atomically, readable by its owner only (0600; the directory 0700). */
export function writeConfigFile(file: string, config: StoredConfig): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600, flag: 'w' });
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new CliError(`cannot write ${file}: ${(err as Error).message}`);
  }
}

export function resolveConfig(options: { configFile?: string; server?: string; fleet?: string; caFile?: string }, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const file = options.configFile ?? env.MESHANICS_CONFIG ?? defaultConfigFile(env);
  const stored = readConfigFile(file);
  const nonEmpty = (v: string | undefined) => (v !== undefined && v !== '' ? v : undefined);
  return {
    url: nonEmpty(options.server) ?? nonEmpty(env.MESHANICS_API_URL) ?? stored.url,
    apiKey: nonEmpty(env.MESHANICS_API_KEY) ?? stored.apiKey,
    fleet: nonEmpty(options.fleet) ?? nonEmpty(env.MESHANICS_FLEET) ?? stored.fleet,
    caFile: nonEmpty(options.caFile) ?? nonEmpty(env.MESHANICS_CA_FILE) ?? stored.caFile,
    file,
  };
}

/** Normalizes a server URL: http(s) only, no trailing slash, no /api/v1 suffix. */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new CliError(`invalid server URL: ${raw}`, EXIT.USAGE);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`the server URL must be http:// or https://, not ${url.protocol}`, EXIT.USAGE);
  let pathname = url.pathname.replace(/\/+$/, '');
  if (pathname.endsWith('/api/v1')) pathname = pathname.slice(0, -'/api/v1'.length);
  return `${url.protocol}//${url.host}${pathname}`;
}
