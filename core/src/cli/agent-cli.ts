#!/usr/bin/env node
// meshanics-agent: the device daemon's command line.
import { promises as fs, readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Agent } from '../agent.js';
import { MeshError } from '../errors.js';
import { DEFAULT_PLUGINS, loadPlugins } from '../plugin-loader.js';
import { AgentDaemon } from '../runtime/agent-daemon.js';
import { DeviceClient } from '../runtime/device-client.js';
import { readHardwareProfile } from '../runtime/hardware.js';
import { AgentStateStore } from '../state/agent-state.js';
import { loadAgentConfig, type AgentConfig, type Allowlist } from '../config/agent-config.js';
import { createDeviceHttpsAgent } from '../transport/https-get.js';
import { TufTargetSource } from '../tuf/tuf-target-source.js';

export const EXIT = Object.freeze({ OK: 0, ERROR: 1, USAGE: 2, OFFBOARDED: 3 });

const AGENT_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP = `meshanics-agent: the Meshanics device agent

Usage:
  meshanics-agent run [options]
  meshanics-agent --help | --version

run options (each also as an environment variable):
  --server HOST:PORT          device gRPC API (MESHANICS_SERVER)
  --cert FILE                 device certificate, PEM (MESHANICS_CERT)
  --key FILE                  device private key, PEM (MESHANICS_KEY)
  --ca FILE                   CA bundle that signs the server, PEM (MESHANICS_CA)
  --artifact-server URL       https://host:port of the TUF repository (MESHANICS_ARTIFACT_SERVER)
  --tuf-root FILE             pinned TUF root metadata (MESHANICS_TUF_ROOT)
  --data-dir DIR              agent state and artifacts (MESHANICS_DATA_DIR, default /var/lib/meshanics)
  --config FILE               device config: allowlists, plugins, defaults for these flags
                              (MESHANICS_CONFIG, default /etc/meshanics/agent.json; missing default = deny all)
  --tag KEY=VALUE             a device tag; repeatable (MESHANICS_TAGS, comma separated)
  --plugins A,B               plugin packages or paths (MESHANICS_PLUGINS, default: the default bundle)
  --log-level LEVEL           trace|debug|info|warn|error (MESHANICS_LOG_LEVEL, default info)

Exit codes: 0 stopped, 1 runtime error, 2 usage or configuration error, 3 offboarded (terminal).
`;

class UsageError extends Error {}

interface RunConfig {
  server: string;
  cert: string;
  key: string;
  ca: string;
  artifactServer: string;
  tufRoot: string;
  dataDir: string;
  tags: Record<string, string>;
  plugins: string[];
  logLevel: string;
  allowlist: Allowlist;
}

function parseRunConfig(argv: string[], env: NodeJS.ProcessEnv, file: AgentConfig): RunConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      server: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      ca: { type: 'string' },
      'artifact-server': { type: 'string' },
      'tuf-root': { type: 'string' },
      'data-dir': { type: 'string' },
      tag: { type: 'string', multiple: true },
      plugins: { type: 'string' },
      'log-level': { type: 'string' },
      config: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) throw new UsageError('');
  // A flag wins over its environment variable, which wins over the config file.
  const pick = (flag: string | undefined, name: string, fromFile?: string): string | undefined =>
    flag ?? (env[name] || undefined) ?? fromFile;
  const server = pick(values.server, 'MESHANICS_SERVER', file.server);
  const cert = pick(values.cert, 'MESHANICS_CERT', file.cert);
  const key = pick(values.key, 'MESHANICS_KEY', file.key);
  const ca = pick(values.ca, 'MESHANICS_CA', file.ca);
  const artifactServer = pick(values['artifact-server'], 'MESHANICS_ARTIFACT_SERVER', file.artifactServer);
  const tufRoot = pick(values['tuf-root'], 'MESHANICS_TUF_ROOT', file.tufRoot);
  const missing = [
    ['--server', server],
    ['--cert', cert],
    ['--key', key],
    ['--ca', ca],
  ].filter(([, v]) => !v);
  if (missing.length > 0) throw new UsageError(`missing ${missing.map(([f]) => f).join(', ')}`);
  // Verification cannot be half configured: a repository without a pinned root (or the
  // reverse) would mean trusting the network.
  if (!artifactServer !== !tufRoot) {
    throw new UsageError(
      artifactServer
        ? '--artifact-server is set but --tuf-root is not: the agent needs the pinned TUF root to verify anything from that server'
        : '--tuf-root is set but --artifact-server is not: the agent needs the repository the root belongs to',
    );
  }
  if (!artifactServer || !tufRoot) throw new UsageError('missing --artifact-server and --tuf-root');
  let url: URL;
  try {
    url = new URL(artifactServer);
  } catch {
    throw new UsageError(`--artifact-server "${artifactServer}" is not a URL`);
  }
  if (url.protocol !== 'https:') throw new UsageError('--artifact-server must be an https:// URL');
  const tagList = values.tag ?? (env.MESHANICS_TAGS ? env.MESHANICS_TAGS.split(',') : []);
  const tags: Record<string, string> = { ...(file.tags ?? {}) };
  for (const t of tagList) {
    const eq = t.indexOf('=');
    if (eq <= 0) throw new UsageError(`--tag "${t}" must be KEY=VALUE`);
    tags[t.slice(0, eq)] = t.slice(eq + 1);
  }
  const pluginList = pick(values.plugins, 'MESHANICS_PLUGINS');
  return {
    server: server!,
    cert: cert!,
    key: key!,
    ca: ca!,
    artifactServer: url.origin,
    tufRoot,
    dataDir: path.resolve(pick(values['data-dir'], 'MESHANICS_DATA_DIR', file.dataDir) ?? '/var/lib/meshanics'),
    tags,
    plugins: pluginList
      ? pluginList.split(',').map((s) => s.trim()).filter(Boolean)
      : [...(file.plugins ?? DEFAULT_PLUGINS)],
    logLevel: pick(values['log-level'], 'MESHANICS_LOG_LEVEL') ?? 'info',
    allowlist: file.allowlist,
  };
}

async function readFileOrExplain(file: string, what: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Finds --config before full parsing: the file supplies defaults for the other flags. */
function configPath(argv: string[], env: NodeJS.ProcessEnv): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--config') return argv[i + 1];
    if (arg.startsWith('--config=')) return arg.slice('--config='.length);
  }
  return env.MESHANICS_CONFIG || undefined;
}

async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help')) throw new UsageError('');
  const fileConfig = await loadAgentConfig(configPath(argv, process.env));
  const config = parseRunConfig(argv, process.env, fileConfig);
  const log = pino({ level: config.logLevel, base: { service: 'meshanics-agent' } });
  const tls = {
    ca: await readFileOrExplain(config.ca, 'CA bundle'),
    cert: await readFileOrExplain(config.cert, 'device certificate'),
    key: await readFileOrExplain(config.key, 'device key'),
  };
  await fs.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const httpsAgent = createDeviceHttpsAgent(tls);
  const targetSource = await TufTargetSource.create({
    metadataDir: path.join(config.dataDir, 'tuf'),
    pinnedRootFile: config.tufRoot,
    artifactServer: config.artifactServer,
    httpsAgent,
  });
  const state = await AgentStateStore.open(config.dataDir);
  const agent = new Agent({ dataDir: config.dataDir, targetSource, state, logger: log, allowlist: config.allowlist, tls });
  for (const plugin of await loadPlugins(config.plugins)) agent.use(plugin);
  const client = new DeviceClient(config.server, tls);
  const daemon = new AgentDaemon({
    agent,
    client,
    hardware: await readHardwareProfile(),
    agentVersion: AGENT_VERSION,
    tags: config.tags,
  });
  const stop = new AbortController();
  const onSignal = (sig: string) => {
    log.info({ signal: sig }, 'stopping');
    stop.abort(new Error(sig));
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  log.info({ server: config.server, dataDir: config.dataDir, plugins: config.plugins, version: AGENT_VERSION }, 'agent starting');
  try {
    const exit = await daemon.run(stop.signal);
    return exit === 'offboarded' ? EXIT.OFFBOARDED : EXIT.OK;
  } finally {
    client.close();
    httpsAgent.destroy();
  }
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (!command || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(HELP);
      return command ? EXIT.OK : EXIT.USAGE;
    }
    if (command === '--version') {
      process.stdout.write(`${AGENT_VERSION}\n`);
      return EXIT.OK;
    }
    if (command === 'run') return await run(rest);
    throw new UsageError(`unknown command "${command}"`);
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      const message = (err as Error).message;
      if (message) process.stderr.write(`meshanics-agent: ${message}\n\n`);
      process.stdout.write(HELP);
      return message ? EXIT.USAGE : EXIT.OK;
    }
    if (err instanceof MeshError && (err.code === 'MESH_ERR_CONFIG_INVALID' || err.code === 'MESH_ERR_PLUGIN_INVALID' || err.code === 'MESH_ERR_PLUGIN_DUPLICATE')) {
      process.stderr.write(`meshanics-agent: ${err.code}: ${err.message}\n`);
      return EXIT.USAGE;
    }
    process.stderr.write(`meshanics-agent: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.ERROR;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = await main();
}
