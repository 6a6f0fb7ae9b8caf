// Core never imports a plugin: the agent loads its plugins by package name (or path) from
// its configuration. The default bundle is only the default list.
import { pathToFileURL } from 'node:url';
import path from 'node:path';
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

type PluginClass = new (options?: Record<string, unknown>) => MeshanicsPlugin;

/** Imports each plugin module and instantiates its default export. */
export async function loadPlugins(
  specifiers: readonly string[],
  options: Record<string, Record<string, unknown>> = {},
): Promise<MeshanicsPlugin[]> {
  const plugins: MeshanicsPlugin[] = [];
  for (const specifier of specifiers) {
    const target = path.isAbsolute(specifier) ? pathToFileURL(specifier).href : specifier;
    let mod: { default?: unknown };
    try {
      mod = (await import(target)) as { default?: unknown };
    } catch (err) {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `cannot load plugin "${specifier}": ${(err as Error).message}`, { cause: err });
    }
    const Plugin = mod.default;
    if (typeof Plugin !== 'function') {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `plugin "${specifier}" has no default export class`);
    }
    plugins.push(new (Plugin as PluginClass)(options[specifier] ?? {}));
  }
  return plugins;
}
