// Core never imports a plugin: the agent loads its plugins by package name (or path) from
// its configuration. The default bundle is only the default list.
//
// Where a plugin comes from (docs/plugin-authoring.md, "Where the agent finds a plugin"):
//   - a path (absolute, or ./ ../ relative to the config file's folder): a module file, or a
//     package directory whose package.json `exports` (or `main`) names the entry;
//   - a package name: <pluginsDir>/<name>/ (the packaged agent's layout, one directory per
//     plugin), <pluginsDir>/node_modules/<name>/ (`npm install --prefix <pluginsDir>`), the
//     config file's folder's node_modules/<name>/, and last core's own resolution (the
//     built-in plugins installed next to core).
import { promises as fs } from 'node:fs';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { compileSchema, type JsonSchema } from './contract/schema.js';
import { MeshError } from './errors.js';
import type { MeshanicsPlugin } from './plugin.js';

export const DEFAULT_PLUGINS: readonly string[] = Object.freeze([
  '@meshanics/artifact-model',
  '@meshanics/artifact-config',
  '@meshanics/artifact-container',
  '@meshanics/artifact-agent',
  '@meshanics/probe-exec',
  '@meshanics/probe-http',
  '@meshanics/probe-file',
]);

/** One plugin in agent.json: a name (package or path), or a name with its options. */
export type PluginEntry = string | { name: string; options?: Record<string, unknown> };

/** A plugin class; `optionsSchema` (static) is the JSON Schema its options are checked against at start. */
type PluginClass = (new (options?: Record<string, unknown>) => MeshanicsPlugin) & { optionsSchema?: JsonSchema };

export interface PluginSearch {
  /** The agent's plugins directory (config `pluginsDir`, `--plugins-dir`). */
  pluginsDir?: string;
  /** The config file's folder: relative paths and a second node_modules are resolved from it. */
  configDir?: string;
}

const PACKAGE_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
// Node's own condition set for an ESM import, in the order the package lists them.
const CONDITIONS = new Set(['node', 'import', 'default']);

function resolveExportTarget(target: unknown): string | undefined {
  if (typeof target === 'string') return target.startsWith('./') ? target : undefined;
  if (Array.isArray(target)) return target.map(resolveExportTarget).find((t) => t !== undefined);
  if (target && typeof target === 'object') {
    for (const [condition, value] of Object.entries(target)) {
      if (!CONDITIONS.has(condition)) continue;
      const found = resolveExportTarget(value);
      if (found) return found;
    }
  }
  return undefined;
}

/** The module a package directory exports as ".", the way `import('<its name>')` would find it. */
async function packageEntry(dir: string): Promise<string> {
  let pkg: { exports?: unknown; main?: unknown };
  try {
    pkg = JSON.parse(await fs.readFile(path.join(dir, 'package.json'), 'utf8')) as typeof pkg;
  } catch (err) {
    throw new Error(`${dir} is not a package directory: ${(err as Error).message}`);
  }
  const { exports } = pkg;
  const sugar = typeof exports === 'string' || Array.isArray(exports) || (exports && typeof exports === 'object' && !Object.keys(exports).some((k) => k.startsWith('.')));
  const main = exports === undefined ? undefined : resolveExportTarget(sugar ? exports : (exports as Record<string, unknown>)['.']);
  if (exports !== undefined && !main) throw new Error(`${dir}/package.json exports no "." entry for import`);
  return path.join(dir, main ?? (typeof pkg.main === 'string' ? pkg.main : 'index.js'));
}

async function isDirectory(p: string): Promise<boolean> {
  return (await fs.stat(p).catch(() => undefined))?.isDirectory() ?? false;
}

/** The URL (or bare name, for core's own resolution) to import for one plugin name. */
export async function resolvePlugin(name: string, search: PluginSearch = {}): Promise<string> {
  const isPath = path.isAbsolute(name) || name.startsWith('./') || name.startsWith('../');
  if (isPath) {
    const file = path.resolve(search.configDir ?? process.cwd(), name);
    return pathToFileURL((await isDirectory(file)) ? await packageEntry(file) : file).href;
  }
  if (!PACKAGE_NAME.test(name)) throw new Error(`"${name}" is neither a package name nor a path (absolute, ./ or ../)`);
  const candidates = [
    ...(search.pluginsDir ? [path.join(search.pluginsDir, name), path.join(search.pluginsDir, 'node_modules', name)] : []),
    ...(search.configDir ? [path.join(search.configDir, 'node_modules', name)] : []),
  ];
  for (const dir of candidates) {
    if (await isDirectory(dir)) return pathToFileURL(await packageEntry(dir)).href;
  }
  return name;
}

function validateOptions(Plugin: PluginClass, name: string, index: number, options: Record<string, unknown>, given: boolean): void {
  const schema = Plugin.optionsSchema;
  if (!schema) {
    if (given) throw new MeshError('MESH_ERR_CONFIG_INVALID', `plugins/${index}/options: plugin "${name}" takes no options (its class declares no static optionsSchema)`);
    return;
  }
  let result;
  try {
    result = compileSchema(schema, `plugins/${index}/options`)(options);
  } catch (err) {
    throw new MeshError('MESH_ERR_PLUGIN_INVALID', `plugin "${name}" has an invalid optionsSchema: ${(err as Error).message}`, { cause: err });
  }
  if (!result.ok) throw new MeshError('MESH_ERR_CONFIG_INVALID', `plugin "${name}": ${result.errors.join('; ')}`);
}

/**
 * Imports each plugin module and instantiates its default export with its options: the
 * entry's own (agent.json) over `defaults` (what the command line sets, keyed by name),
 * checked against the class's static `optionsSchema` first.
 */
export async function loadPlugins(entries: readonly PluginEntry[], defaults: Record<string, Record<string, unknown>> = {}, search: PluginSearch = {}): Promise<MeshanicsPlugin[]> {
  const plugins: MeshanicsPlugin[] = [];
  for (const [index, entry] of entries.entries()) {
    const name = typeof entry === 'string' ? entry : entry.name;
    const own = typeof entry === 'string' ? undefined : entry.options;
    let mod: { default?: unknown };
    try {
      mod = (await import(await resolvePlugin(name, search))) as { default?: unknown };
    } catch (err) {
      const where = [search.pluginsDir, search.configDir && path.join(search.configDir, 'node_modules')].filter(Boolean).join(', ');
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `cannot load plugin "${name}"${where ? ` (searched ${where} and the agent's own packages)` : ''}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const Plugin = mod.default;
    if (typeof Plugin !== 'function') {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `plugin "${name}" has no default export class`);
    }
    const options = { ...(defaults[name] ?? {}), ...(own ?? {}) };
    validateOptions(Plugin as PluginClass, name, index, options, own !== undefined);
    plugins.push(new (Plugin as PluginClass)(options));
  }
  return plugins;
}

/** The name of a plugin entry (a package name or a path). */
export function pluginName(entry: PluginEntry): string {
  return typeof entry === 'string' ? entry : entry.name;
}
