// The documented precedence of `meshanics-agent run` settings (core/src/cli/usage.ts): a flag
// wins over its environment variable, which wins over the config file, which wins over what
// enrollment wrote into the data dir. Real files: an enrolled identity saved by the identity
// store and a config file on disk.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../src/cli/run-command.js';
import { saveEnrollment } from '../src/identity/identity-store.js';
import { tempDir } from './helpers.js';

/** Each setting as a flag, its variable, its config file key, and what enrollment provides. */
const SETTINGS = [
  { flag: 'server', env: 'MESHANICS_SERVER', file: 'server', enrolled: 'enrolled.example:7443' },
  { flag: 'cert', env: 'MESHANICS_CERT', file: 'cert', enrolled: 'identity/current/device.crt' },
  { flag: 'key', env: 'MESHANICS_KEY', file: 'key', enrolled: 'identity/current/device.key' },
  { flag: 'ca', env: 'MESHANICS_CA', file: 'ca', enrolled: 'identity/ca.crt' },
  { flag: 'artifact-server', env: 'MESHANICS_ARTIFACT_SERVER', file: 'artifactServer', enrolled: 'https://enrolled.example:8443' },
  { flag: 'tuf-root', env: 'MESHANICS_TUF_ROOT', file: 'tufRoot', enrolled: 'identity/tuf-root.json' },
] as const;

const resolvedField = { server: 'server', cert: 'cert', key: 'key', ca: 'ca', 'artifact-server': 'artifactServer', 'tuf-root': 'tufRoot' } as const;

async function enrolledDataDir(): Promise<string> {
  const dataDir = await tempDir('precedence');
  await saveEnrollment(
    dataDir,
    {
      fleet: 'lab',
      name: 'edge-1',
      spiffeId: 'spiffe://meshanics.local/fleet/lab/device/edge-1',
      certificate: 'enrolled certificate',
      caBundle: 'enrolled ca',
      tufRoot: '{}',
      deviceApi: 'enrolled.example:7443',
      artifactServer: 'https://enrolled.example:8443',
      notBefore: new Date().toISOString(),
      notAfter: new Date(Date.now() + 86_400_000).toISOString(),
    },
    'enrolled private key',
    'https://enrolled.example:9443',
  );
  return dataDir;
}

/** A value for `layer` of a setting: URLs stay URLs, paths stay absolute. */
function valueOf(setting: (typeof SETTINGS)[number], layer: 'flag' | 'env' | 'file'): string {
  if (setting.flag === 'server') return `${layer}.example:7443`;
  if (setting.flag === 'artifact-server') return `https://${layer}.example:8443`;
  return `/${layer}/${setting.flag}`;
}

describe('run settings precedence: flag > environment > config file > enrolled identity', () => {
  for (const setting of SETTINGS) {
    it(`${setting.flag}: each layer overrides the ones below it`, async () => {
      const dataDir = await enrolledDataDir();
      const config = path.join(dataDir, 'agent.json');
      const field = resolvedField[setting.flag];
      const resolve = (layers: Array<'flag' | 'env' | 'file'>) => {
        const argv = ['--data-dir', dataDir, '--config', config];
        const env: NodeJS.ProcessEnv = {};
        if (layers.includes('flag')) argv.push(`--${setting.flag}`, valueOf(setting, 'flag'));
        if (layers.includes('env')) env[setting.env] = valueOf(setting, 'env');
        return resolveRunConfig(argv, env).then((c) => c[field]);
      };
      const enrolledValue = setting.enrolled.startsWith('identity/') ? path.join(dataDir, setting.enrolled) : setting.enrolled;

      await writeFile(config, JSON.stringify({ allowlist: {} }));
      expect(await resolve([])).toBe(enrolledValue);
      await writeFile(config, JSON.stringify({ allowlist: {}, [setting.file]: valueOf(setting, 'file') }));
      expect(await resolve([])).toBe(valueOf(setting, 'file'));
      expect(await resolve(['env'])).toBe(valueOf(setting, 'env'));
      expect(await resolve(['env', 'flag'])).toBe(valueOf(setting, 'flag'));
      expect(await resolve(['flag'])).toBe(valueOf(setting, 'flag'));
    });
  }

  it("data dir: flag > MESHANICS_DATA_DIR > config file; tags: --tag replaces MESHANICS_TAGS, both over the file's", async () => {
    const root = await tempDir('precedence');
    const config = path.join(root, 'agent.json');
    await writeFile(config, JSON.stringify({ dataDir: path.join(root, 'from-file'), tags: { site: 'file', zone: 'file' }, allowlist: {} }));
    const base = ['--config', config, '--server', 's:1', '--cert', '/c', '--key', '/k', '--ca', '/a', '--artifact-server', 'https://a:1', '--tuf-root', '/t'];
    const env = { MESHANICS_DATA_DIR: path.join(root, 'from-env'), MESHANICS_TAGS: 'site=env,rack=7' };
    expect((await resolveRunConfig(base, {})).dataDir).toBe(path.join(root, 'from-file'));
    expect((await resolveRunConfig(base, env)).dataDir).toBe(path.join(root, 'from-env'));
    expect((await resolveRunConfig([...base, '--data-dir', path.join(root, 'from-flag')], env)).dataDir).toBe(path.join(root, 'from-flag'));
    expect((await resolveRunConfig(base, {})).tags).toEqual({ site: 'file', zone: 'file' });
    expect((await resolveRunConfig(base, env)).tags).toEqual({ site: 'env', zone: 'file', rack: '7' });
    expect((await resolveRunConfig([...base, '--tag', 'site=flag', '--tag', 'row=2'], env)).tags).toEqual({ site: 'flag', zone: 'file', row: '2' });
    await expect(resolveRunConfig([...base, '--tag', 'no-equals'], {})).rejects.toThrow('--tag "no-equals" must be KEY=VALUE');
  });
});
