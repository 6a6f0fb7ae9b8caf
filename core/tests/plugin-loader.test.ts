// Loading plugins the way Node users expect (issue 27): by package name from the plugins
// directory and the config file's folder, by package directory (its `exports`), by file path;
// options from agent.json checked against the plugin's optionsSchema; and a MeshError from
// another copy of core keeping its code in the report. Real files and real dynamic imports.
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MeshError, isMeshError, loadPlugins, parseAgentConfig, reasonOf, runPipeline } from '../src/index.js';
import { createTestAgent, testAssignment } from '../src/testing/index.js';
import { tempDir } from './helpers.js';

/** A plugin package: `<dir>/package.json` with conditional exports, the entry under dist/. */
async function writePackage(dir: string, name: string, kind: string, extra = ''): Promise<void> {
  await mkdir(path.join(dir, 'dist'), { recursive: true });
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', type: 'module', exports: { '.': { types: './dist/index.d.ts', import: './dist/index.js' }, './package.json': './package.json' } }),
  );
  await writeFile(
    path.join(dir, 'dist', 'index.js'),
    `export default class P {
  static optionsSchema = { type: 'object', additionalProperties: false, properties: { slots: { type: 'integer', minimum: 2 } } };
  name = ${JSON.stringify(name)}; version = '1.0.0'; coreApi = '^0.1.0'; provides = { artifactKind: ${JSON.stringify(kind)} };
  specSchema = { type: 'object' };
  constructor(options) { this.options = options; }
  apply() {}
}
${extra}`,
  );
}

describe('plugin loader', () => {
  it('finds a package by name in <pluginsDir>/<name>/ (the device package layout), resolving its exports', async () => {
    const pluginsDir = await tempDir('plugins');
    await writePackage(path.join(pluginsDir, '@acme', 'fw'), '@acme/fw', 'fw');
    const [plugin] = await loadPlugins(['@acme/fw'], {}, { pluginsDir });
    expect(plugin!.name).toBe('@acme/fw');
  });

  it('finds a package by name in <pluginsDir>/node_modules/ (npm install --prefix) and in the config folder', async () => {
    const pluginsDir = await tempDir('plugins');
    const configDir = await tempDir('etc');
    await writePackage(path.join(pluginsDir, 'node_modules', '@acme', 'a'), '@acme/a', 'a');
    await writePackage(path.join(configDir, 'node_modules', 'plain-b'), 'plain-b', 'b');
    const plugins = await loadPlugins(['@acme/a', 'plain-b'], {}, { pluginsDir, configDir });
    expect(plugins.map((p) => p.name)).toEqual(['@acme/a', 'plain-b']);
  });

  it('loads a package directory and a module file by path, relative ones against the config folder', async () => {
    const configDir = await tempDir('etc');
    await writePackage(path.join(configDir, 'vendor', 'pkg'), 'dir-plugin', 'd');
    await writePackage(path.join(configDir, 'vendor', 'file'), 'file-plugin', 'f');
    const plugins = await loadPlugins(['./vendor/pkg', path.join(configDir, 'vendor', 'file', 'dist', 'index.js')], {}, { configDir });
    expect(plugins.map((p) => p.name)).toEqual(['dir-plugin', 'file-plugin']);
  });

  it('names the plugin and where it searched when a package is not found', async () => {
    const pluginsDir = await tempDir('plugins');
    const err = await loadPlugins(['@acme/missing'], {}, { pluginsDir }).catch((e: unknown) => e);
    expect(isMeshError(err, 'MESH_ERR_PLUGIN_INVALID')).toBe(true);
    expect((err as Error).message).toContain(`cannot load plugin "@acme/missing" (searched ${pluginsDir}`);
  });

  it('gives options from agent.json to the constructor after checking them against optionsSchema', async () => {
    const pluginsDir = await tempDir('plugins');
    await writePackage(path.join(pluginsDir, '@acme', 'fw'), '@acme/fw', 'fw');
    const config = parseAgentConfig({ plugins: ['@acme/other', { name: '@acme/fw', options: { slots: 2 } }] }, 'agent.json');
    const [plugin] = await loadPlugins(config.plugins!.slice(1), {}, { pluginsDir });
    expect((plugin as unknown as { options: unknown }).options).toEqual({ slots: 2 });
  });

  it('refuses options that break the plugin schema with the path and the rule, as a configuration error', async () => {
    const pluginsDir = await tempDir('plugins');
    await writePackage(path.join(pluginsDir, '@acme', 'fw'), '@acme/fw', 'fw');
    const err = await loadPlugins([{ name: '@acme/fw', options: { slots: 1 } }], {}, { pluginsDir }).catch((e: unknown) => e);
    expect(isMeshError(err, 'MESH_ERR_CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toBe('plugin "@acme/fw": plugins/0/options/slots must be >= 2');
  });

  it('refuses options for a plugin that declares no optionsSchema', async () => {
    const dir = await tempDir('plugins');
    const file = path.join(dir, 'bare.mjs');
    await writeFile(file, `export default class { name = 'Bare'; version = '1.0.0'; coreApi = '^0.1.0'; provides = { artifactKind: 'bare' }; specSchema = {}; apply() {} }\n`);
    await expect(loadPlugins([{ name: file, options: { a: 1 } }])).rejects.toThrow('takes no options (its class declares no static optionsSchema)');
  });

  it('accepts a plugin entry object in agent.json and refuses an unknown key in it', () => {
    expect(() => parseAgentConfig({ plugins: [{ name: '@acme/fw', option: {} }] }, 'agent.json')).toThrow(/MESH|plugins\/0/);
    expect(parseAgentConfig({ pluginsDir: '/usr/lib/meshanics-agent/plugins', plugins: [{ name: '@acme/fw' }] }, 'agent.json').pluginsDir).toBe('/usr/lib/meshanics-agent/plugins');
  });
});

describe('errors from another copy of core', () => {
  async function foreignErrors(): Promise<{ MeshError: typeof MeshError }> {
    // A second module instance of errors.js: what a plugin installed with its own @meshanics/core throws.
    const dir = await tempDir('core-copy');
    const copy = path.join(dir, 'errors.js');
    await copyFile(fileURLToPath(new URL('../dist/errors.js', import.meta.url)), copy);
    return (await import(pathToFileURL(copy).href)) as { MeshError: typeof MeshError };
  }

  it('recognises a MeshError of another copy by its brand, vendor code included', async () => {
    const foreign = await foreignErrors();
    expect(foreign.MeshError).not.toBe(MeshError);
    const err = new foreign.MeshError('MESH_ERR_X_ACME_SLOT_BUSY', 'slot b is mounted');
    expect(err instanceof MeshError).toBe(true);
    expect(isMeshError(err, 'MESH_ERR_X_ACME_SLOT_BUSY')).toBe(true);
    expect(reasonOf(err)).toBe('MESH_ERR_X_ACME_SLOT_BUSY: slot b is mounted');
    // A plain error with a MESH_ERR_ code (a vendor's own class) counts too; other codes do not.
    expect(reasonOf(Object.assign(new Error('x'), { code: 'MESH_ERR_X_ACME_Y' }))).toBe('MESH_ERR_X_ACME_Y: x');
    expect(reasonOf(Object.assign(new Error('gone'), { code: 'ENOENT' }))).toBe('gone');
  });

  it('keeps the code of a foreign MeshError thrown in a hook in the FAILED reason', async () => {
    const foreign = await foreignErrors();
    const { agent, source } = await createTestAgent([
      {
        name: 'Foreign',
        version: '1.0.0',
        coreApi: '^0.1.0',
        provides: { artifactKind: 'foreign' },
        specSchema: { type: 'object' },
        apply(a) {
          a.hooks.verify.for('foreign').tapPromise('Foreign', async () => {
            throw new foreign.MeshError('MESH_ERR_ALLOWLIST_DENIED', 'not under allowlist.writePaths');
          });
        },
      },
      {
        name: 'Probe',
        version: '1.0.0',
        coreApi: '^0.1.0',
        provides: { probeType: 'ok' },
        specSchema: { type: 'object' },
        apply(a) {
          a.hooks.probe.for('ok').tapPromise('Probe', async () => ({ healthy: true, detail: 'ok' }));
        },
      },
    ]);
    const reasons: string[] = [];
    agent.hooks.transition.tapPromise('t', async (e) => void reasons.push(e.reason));
    const target = await source.publish('f/1', 'x');
    const outcome = await runPipeline(
      agent,
      testAssignment(target, { kind: 'foreign', probe: { type: 'ok', specJson: '{}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 } }),
      new AbortController().signal,
    );
    expect(outcome).toBe('FAILED');
    expect(reasons.at(-1)).toContain('MESH_ERR_PLUGIN_FAILED: verify hook for kind "foreign" failed: MESH_ERR_ALLOWLIST_DENIED: not under allowlist.writePaths');
  });
});

describe('the default plugins directory', () => {
  it('is <install root>/plugins in the device package layout, else <data-dir>/plugins', async () => {
    const { defaultPluginsDir } = await import('../src/cli/run-command.js');
    const lib = await tempDir('usr-lib');
    const core = path.join(lib, 'versions', '0.1.0', 'node_modules', '@meshanics', 'core');
    await mkdir(core, { recursive: true });
    expect(defaultPluginsDir('/var/lib/x', core)).toBe('/var/lib/x/plugins');
    await mkdir(path.join(lib, 'plugins'));
    expect(defaultPluginsDir('/var/lib/x', core)).toBe(path.join(lib, 'plugins'));
    expect(defaultPluginsDir('/var/lib/x', fileURLToPath(new URL('../', import.meta.url)))).toBe('/var/lib/x/plugins');
  });
});
