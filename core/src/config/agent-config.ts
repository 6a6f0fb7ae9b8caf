// The device's own configuration (`--config`, default /etc/meshanics/agent.json). It is the
// device maker's say over what any instruction may do: a signed assignment can choose only
// inside these allowlists, never widen them. Everything is denied until listed here.
import { promises as fs } from 'node:fs';
import { compileSchema, type JsonSchema, type SchemaValidator, type Validation } from '../contract/schema.js';
import { MeshError } from '../errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/meshanics/agent.json';

export interface Allowlist {
  /** Absolute directory prefixes under which config artifacts may be written. */
  writePaths: readonly string[];
  /** systemd units a config artifact may reload-or-restart. */
  systemdUnits: readonly string[];
  /** Absolute paths of binaries that exec probes and reload actions may run. */
  execBinaries: readonly string[];
  /** Hosts an http probe may reach. */
  httpHosts: readonly string[];
  /** Host path prefixes containers may bind-mount. */
  bindMountPaths: readonly string[];
}

export interface AgentConfig {
  server?: string;
  artifactServer?: string;
  cert?: string;
  key?: string;
  ca?: string;
  tufRoot?: string;
  dataDir?: string;
  tags?: Record<string, string>;
  /** Package names or paths, or `{ name, options }` (options checked against the plugin's optionsSchema). */
  plugins?: Array<string | { name: string; options?: Record<string, unknown> }>;
  /**
   * Where plugins named by package are looked up first (`<dir>/<name>/` or
   * `<dir>/node_modules/<name>/`). Default: see defaultPluginsDir in cli/run-command.ts.
   */
  pluginsDir?: string;
  containerRuntime?: string;
  logs?: {
    /** auto: the journal when the agent runs under systemd with journald, else the file. */
    source?: 'auto' | 'journald' | 'file';
    /** The agent's own unit; the only unit whose journal is ever read. */
    unit?: string;
  };
  tuf?: {
    /**
     * Accept TUF targets that carry no signed kind and spec (custom.meshanics) and act on the
     * control plane's kind and spec alone. Default false: such a target ends FAILED with
     * MESH_ERR_TUF_INTENT_UNSIGNED before it is downloaded. The agent logs a warning at every
     * start while this is on (docs/security.md).
     */
    allowUnsignedIntent?: boolean;
  };
  allowlist: Allowlist;
  /** The file this config was read from (not a key of the file); absent for the built-in defaults. */
  source?: string;
}

export const LOOPBACK_HOSTS: readonly string[] = Object.freeze(['127.0.0.1', '::1', 'localhost']);

const absPath = { type: 'string', pattern: '^/', maxLength: 4096 };

export const AGENT_CONFIG_SCHEMA: JsonSchema = Object.freeze({
  type: 'object',
  additionalProperties: false,
  properties: {
    $schema: { type: 'string' },
    server: { type: 'string', minLength: 1 },
    artifactServer: { type: 'string', pattern: '^https://' },
    cert: absPath,
    key: absPath,
    ca: absPath,
    tufRoot: absPath,
    dataDir: absPath,
    tags: {
      type: 'object',
      propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$' },
      additionalProperties: { type: 'string', maxLength: 256 },
    },
    plugins: {
      type: 'array',
      uniqueItems: true,
      items: {
        anyOf: [
          { type: 'string', minLength: 1 },
          {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            properties: { name: { type: 'string', minLength: 1 }, options: { type: 'object' } },
          },
        ],
      },
    },
    pluginsDir: absPath,
    containerRuntime: { type: 'string', minLength: 1 },
    logs: {
      type: 'object',
      additionalProperties: false,
      properties: {
        source: { enum: ['auto', 'journald', 'file'] },
        unit: { type: 'string', pattern: '^[A-Za-z0-9:_.@-]{1,200}\\.service$' },
      },
    },
    tuf: {
      type: 'object',
      additionalProperties: false,
      properties: { allowUnsignedIntent: { type: 'boolean' } },
    },
    allowlist: {
      type: 'object',
      additionalProperties: false,
      properties: {
        writePaths: { type: 'array', items: absPath, uniqueItems: true },
        systemdUnits: {
          type: 'array',
          uniqueItems: true,
          items: { type: 'string', pattern: '^[A-Za-z0-9:_.@-]{1,200}\\.(service|socket|target|timer|path)$' },
        },
        execBinaries: { type: 'array', items: absPath, uniqueItems: true },
        httpHosts: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 253 }, uniqueItems: true },
        bindMountPaths: { type: 'array', items: absPath, uniqueItems: true },
      },
    },
  },
});

// Compiled on the first config file parsed, not at import: an agent without a config file
// (defaults) never needs this validator (issue #9, idle RSS).
let validator: SchemaValidator<Partial<AgentConfig>> | undefined;
function validate(value: unknown): Validation<Partial<AgentConfig>> {
  validator ??= compileSchema<Partial<AgentConfig>>(AGENT_CONFIG_SCHEMA, 'config');
  return validator(value);
}

function freezeAllowlist(raw: Partial<Allowlist> | undefined): Allowlist {
  return Object.freeze({
    writePaths: Object.freeze([...(raw?.writePaths ?? [])]),
    systemdUnits: Object.freeze([...(raw?.systemdUnits ?? [])]),
    execBinaries: Object.freeze([...(raw?.execBinaries ?? [])]),
    httpHosts: Object.freeze([...(raw?.httpHosts ?? LOOPBACK_HOSTS)]),
    bindMountPaths: Object.freeze([...(raw?.bindMountPaths ?? [])]),
  });
}

/** Validates a parsed config; errors name the file, the path and the rule. */
export function parseAgentConfig(value: unknown, source: string): AgentConfig {
  const result = validate(value);
  if (!result.ok) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `${source}: ${result.errors.join('; ')}`);
  }
  const config = result.value;
  return { ...config, allowlist: freezeAllowlist(config.allowlist) };
}

/**
 * Reads the config file. A missing file at the default path means "defaults" (everything
 * denied but loopback probes); a missing file someone named explicitly is an error.
 */
export async function loadAgentConfig(file: string | undefined): Promise<AgentConfig> {
  const target = file ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await fs.readFile(target, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && file === undefined) {
      return { allowlist: freezeAllowlist(undefined) };
    }
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `cannot read ${target}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `${target} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return { ...parseAgentConfig(parsed, target), source: target };
}

/** The deny-everything allowlist (loopback http only), for agents built in code. */
export function defaultAllowlist(overrides: Partial<Allowlist> = {}): Allowlist {
  return freezeAllowlist(overrides);
}
