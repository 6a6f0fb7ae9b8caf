import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import pino, { type Level, type Logger } from 'pino';
import { Agent } from '../agent.js';
import { loadAgentConfig, type AgentConfig } from '../config/agent-config.js';
import { MeshError } from '../errors.js';
import { loadEnrolledIdentity, readOffboardedMarker, wipeIdentity, type EnrolledIdentity } from '../identity/identity-store.js';
import { CertificateRenewer } from '../identity/renewal.js';
import type { LogSource } from '../logs/collect.js';
import { LogUploader } from '../logs/log-uploader.js';
import { DEFAULT_PLUGINS, loadPlugins, pluginName, type PluginEntry } from '../plugin-loader.js';
import { AgentDaemon } from '../runtime/agent-daemon.js';
import { DeviceClient } from '../runtime/device-client.js';
import { readHardwareProfile } from '../runtime/hardware.js';
import { settleSelfUpdate } from '../runtime/self-update.js';
import { AgentStateStore } from '../state/agent-state.js';
import { createDeviceHttpsAgent } from '../transport/https-get.js';
import type { DeviceTlsMaterial } from '../transport/tls.js';
import { TufTargetSource } from '../tuf/tuf-target-source.js';
import { EXIT, UsageError } from './usage.js';

const CONTAINER_PLUGIN = '@meshanics/artifact-container';
const AGENT_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export { AGENT_VERSION };

/**
 * The plugins directory when none is configured: `<install root>/plugins` when this core runs
 * from an installed package and that directory exists, else `<data-dir>/plugins` (a checkout).
 * The install root is the folder holding core's node_modules, or one of its two parents: the
 * device package keeps core in /usr/lib/meshanics-agent/versions/<v>/node_modules and its
 * plugins in /usr/lib/meshanics-agent/plugins (issue 24).
 */
export function defaultPluginsDir(dataDir: string, coreDir = fileURLToPath(new URL('../../', import.meta.url))): string {
  const installed = /^(.*)\/node_modules\/@meshanics\/core\/?$/.exec(coreDir);
  for (let root = installed?.[1], up = 0; root !== undefined && up < 3; root = path.dirname(root), up++) {
    if (existsSync(path.join(root, 'plugins'))) return path.join(root, 'plugins');
  }
  return path.join(dataDir, 'plugins');
}

export interface RunConfig {
  server: string;
  cert: string;
  key: string;
  ca: string;
  artifactServer: string;
  tufRoot: string;
  dataDir: string;
  tags: Record<string, string>;
  plugins: PluginEntry[];
  pluginsDir: string;
  containerRuntime: string;
  logLevel: string;
  file: AgentConfig;
  enrolled: EnrolledIdentity | undefined;
}

const OPTIONS = {
  server: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  'artifact-server': { type: 'string' },
  'tuf-root': { type: 'string' },
  'data-dir': { type: 'string' },
  tag: { type: 'string', multiple: true },
  plugins: { type: 'string' },
  'plugins-dir': { type: 'string' },
  'container-runtime': { type: 'string' },
  'log-level': { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean' },
} as const;

/** Exported for tests: the settings a `run` resolves from flags, environment, config file and enrolled identity. */
export async function resolveRunConfig(argv: string[], env: NodeJS.ProcessEnv): Promise<RunConfig> {
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  if (values.help) throw new UsageError('');
  const file = await loadAgentConfig(values.config ?? (env.MESHANICS_CONFIG || undefined));
  // A flag wins over its environment variable, which wins over the config file, which wins
  // over what enrollment wrote into the data dir.
  const pick = (flag: string | undefined, name: string, ...fallbacks: Array<string | undefined>): string | undefined =>
    flag ?? (env[name] || undefined) ?? fallbacks.find((v) => v !== undefined);
  const dataDir = path.resolve(pick(values['data-dir'], 'MESHANICS_DATA_DIR', file.dataDir) ?? '/var/lib/meshanics');
  const marker = await readOffboardedMarker(dataDir);
  if (marker) {
    throw new MeshError('MESH_ERR_OFFBOARDED', `this device was offboarded at ${marker.at}; its key material is gone; enroll again`);
  }
  const enrolled = await loadEnrolledIdentity(dataDir);
  const e = enrolled;
  const server = pick(values.server, 'MESHANICS_SERVER', file.server, e?.enrollment.deviceApi);
  const cert = pick(values.cert, 'MESHANICS_CERT', file.cert, e?.certPath);
  const key = pick(values.key, 'MESHANICS_KEY', file.key, e?.keyPath);
  const ca = pick(values.ca, 'MESHANICS_CA', file.ca, e?.caPath);
  const artifactServer = pick(values['artifact-server'], 'MESHANICS_ARTIFACT_SERVER', file.artifactServer, e?.enrollment.artifactServer);
  const tufRoot = pick(values['tuf-root'], 'MESHANICS_TUF_ROOT', file.tufRoot, e?.tufRootPath);
  const missing = [
    ['--server', server],
    ['--cert', cert],
    ['--key', key],
    ['--ca', ca],
  ].filter(([, v]) => !v);
  if (missing.length > 0) {
    throw new UsageError(`missing ${missing.map(([f]) => f).join(', ')} (or enroll first: meshanics-agent enroll --help)`);
  }
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
  const tags: Record<string, string> = { ...(file.tags ?? {}) };
  for (const t of values.tag ?? (env.MESHANICS_TAGS ? env.MESHANICS_TAGS.split(',') : [])) {
    const eq = t.indexOf('=');
    if (eq <= 0) throw new UsageError(`--tag "${t}" must be KEY=VALUE`);
    tags[t.slice(0, eq)] = t.slice(eq + 1);
  }
  const pluginList = pick(values.plugins, 'MESHANICS_PLUGINS');
  const containerRuntime = pick(values['container-runtime'], 'MESHANICS_CONTAINER_RUNTIME', file.containerRuntime) ?? 'auto';
  let plugins: PluginEntry[] = pluginList
    ? pluginList
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [...(file.plugins ?? DEFAULT_PLUGINS)];
  // "none" disables container payloads: the plugin is not loaded, so the kind is not advertised.
  if (containerRuntime === 'none') plugins = plugins.filter((p) => pluginName(p) !== CONTAINER_PLUGIN);
  const pluginsDir = path.resolve(pick(values['plugins-dir'], 'MESHANICS_PLUGINS_DIR', file.pluginsDir) ?? defaultPluginsDir(dataDir));
  return {
    server: server!,
    cert: cert!,
    key: key!,
    ca: ca!,
    artifactServer: url.origin,
    tufRoot,
    dataDir,
    tags,
    plugins,
    pluginsDir,
    containerRuntime,
    logLevel: pick(values['log-level'], 'MESHANICS_LOG_LEVEL') ?? 'info',
    file,
    enrolled,
  };
}

async function readFileOrExplain(file: string, what: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** JSON logs to stdout (the journal, under systemd) and to the agent's own file. */
function createLogger(config: RunConfig, logFile: string): Logger {
  return pino(
    { level: config.logLevel, base: { service: 'meshanics-agent' } },
    pino.multistream([
      { level: config.logLevel as Level, stream: process.stdout },
      { level: config.logLevel as Level, stream: pino.destination({ dest: logFile, append: true, mkdir: true, sync: false }) },
    ]),
  );
}

function logSource(config: RunConfig, logFile: string): LogSource {
  const wanted = config.file.logs?.source ?? 'auto';
  const unit = config.file.logs?.unit ?? 'meshanics-agent.service';
  // Under systemd with journald, stdout is the journal (JOURNAL_STREAM says so).
  const journald = wanted === 'journald' || (wanted === 'auto' && Boolean(process.env.JOURNAL_STREAM) && existsSync('/usr/bin/journalctl'));
  return journald ? { kind: 'journald', unit } : { kind: 'file', path: logFile };
}

export async function runCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const config = await resolveRunConfig(argv, env);
  await fs.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const logFile = path.join(config.dataDir, 'logs', 'agent.log');
  const log = createLogger(config, logFile);
  const readTls = async (): Promise<DeviceTlsMaterial> => ({
    ca: await readFileOrExplain(config.ca, 'CA bundle'),
    cert: await readFileOrExplain(config.cert, 'device certificate'),
    key: await readFileOrExplain(config.key, 'device key'),
  });
  let tls = await readTls();
  let httpsAgent = createDeviceHttpsAgent(tls);
  const targetSource = await TufTargetSource.create({
    metadataDir: path.join(config.dataDir, 'tuf'),
    pinnedRootFile: config.tufRoot,
    artifactServer: config.artifactServer,
    httpsAgent,
    allowUnsignedIntent: config.file.tuf?.allowUnsignedIntent === true,
    onTrustRecovered: (message, from) => (from === 'pinned' ? log.error(message) : log.warn(message)),
  });
  const state = await AgentStateStore.open(config.dataDir);
  const agent = new Agent({ dataDir: config.dataDir, targetSource, state, logger: log, allowlist: config.file.allowlist, tls });
  const plugins = await loadPlugins(
    config.plugins,
    { [CONTAINER_PLUGIN]: { runtime: config.containerRuntime } },
    {
      pluginsDir: config.pluginsDir,
      ...(config.file.source ? { configDir: path.dirname(path.resolve(config.file.source)) } : {}),
    },
  );
  for (const plugin of plugins) agent.use(plugin);
  // A self-update in progress (issue 28): finish a rollback, hand back, or start the trial.
  let handoverExit: number | undefined;
  const stop = new AbortController();
  const trial = await settleSelfUpdate(agent, AGENT_VERSION, (code) => {
    handoverExit = code;
    stop.abort(new Error('self-update hand-back'));
  });
  if (handoverExit !== undefined) return handoverExit;
  const client = new DeviceClient(config.server, tls);
  const daemon = new AgentDaemon({
    agent,
    client,
    hardware: await readHardwareProfile(),
    agentVersion: AGENT_VERSION,
    tags: config.tags,
    ...(trial ? { onHeartbeatAnswered: () => trial.confirmHealthy(), isHeld: (assignment) => trial.holds(assignment) } : {}),
    logUploader: new LogUploader(logSource(config, logFile), log),
    ...(config.enrolled
      ? {
          renewer: new CertificateRenewer(config.dataDir, config.enrolled, log),
          reconnect: (material: DeviceTlsMaterial) => {
            tls = material;
            const previous = httpsAgent;
            httpsAgent = createDeviceHttpsAgent(material);
            targetSource.useHttpsAgent(httpsAgent);
            previous.destroy();
            return new DeviceClient(config.server, material);
          },
        }
      : {}),
  });
  const onSignal = (sig: string) => {
    log.info({ signal: sig }, 'stopping');
    stop.abort(new Error(sig));
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  if (config.file.tuf?.allowUnsignedIntent === true) {
    // Every start, so the weakened check stays visible in the journal (docs/security.md).
    log.warn(
      { config: config.file.source, setting: 'tuf.allowUnsignedIntent' },
      "tuf.allowUnsignedIntent is on: targets without a signed kind and spec (custom.meshanics) are accepted on the control plane's word alone",
    );
  }
  log.info({ server: config.server, dataDir: config.dataDir, plugins: config.plugins.map(pluginName), pluginsDir: config.pluginsDir, version: AGENT_VERSION }, 'agent starting');
  try {
    const exit = await daemon.run(stop.signal);
    trial?.stop();
    if (handoverExit !== undefined) return handoverExit;
    if (exit === 'offboarded') {
      // The key and certificate the agent actually used go too: with --cert/--key (or their
      // variables or config entries) over an enrolled identity, both are wiped, not only the
      // enrolled one. Removing one already under identity/ again is a no-op.
      await wipeIdentity(config.dataDir, [config.key, config.cert], { fleet: config.enrolled?.enrollment.fleet, name: config.enrolled?.enrollment.name });
      log.warn({ dataDir: config.dataDir }, 'offboarded: key material wiped; exiting for good');
      return EXIT.OFFBOARDED;
    }
    return EXIT.OK;
  } finally {
    httpsAgent.destroy();
    await new Promise<void>((resolve) => log.flush(() => resolve()));
  }
}
