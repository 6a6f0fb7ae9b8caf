// docs/plugin-authoring.md, "Your first plugin on a device", executed as written (issue 27):
// every ```sh block of the section runs in order in one scratch directory OUTSIDE the
// workspace, with real processes: the template copied and built against a packed core, the
// server, an enrolled checkout agent with the plugin installed in its plugins directory and
// options from agent.json, a schema upgrade on the running server, a vendor error code in the
// report, a rollback. Only the environment is the test's: MESHANICS (this checkout) and the
// server's addresses (ports the OS picked just before; the walkthrough's defaults are fixed
// ports, which tests must not bind).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECTION = '## Your first plugin on a device';

function walkthroughBlocks(markdown: string): string[] {
  const start = markdown.indexOf(SECTION);
  if (start < 0) throw new Error(`docs/plugin-authoring.md has no "${SECTION}" section`);
  const end = markdown.indexOf('\n## ', start + SECTION.length);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

async function freePort(): Promise<string> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return `127.0.0.1:${port}`;
}

let work: string | undefined;
const groups: number[] = [];

afterAll(async () => {
  // Each block ran in its own process group; what it left running (serve, the agent) goes with it.
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs one block with bash -e, carrying the working directory and exported variables from block to block. */
async function runBlock(block: string, dir: string, state: string): Promise<{ code: number | null; output: string }> {
  const script = ['set -euo pipefail', `cd "$(cat '${state}/cwd')"`, `source '${state}/env'`, block, `pwd > '${state}/cwd'`, `export -p > '${state}/env'`].join('\n');
  const child = spawn('bash', ['-c', script], { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  groups.push(child.pid!);
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 240_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, output };
}

describe('docs/plugin-authoring.md walkthrough', () => {
  it('takes a plugin made from the template to HEALTHY, upgrades its schema live, reports its error code, and rolls back', async () => {
    const blocks = walkthroughBlocks(await readFile(path.join(ROOT, 'docs', 'plugin-authoring.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(9);
    work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-walkthrough-'));
    const state = path.join(work, '.state');
    await rm(state, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(state));
    await writeFile(path.join(state, 'cwd'), work);
    const env: Record<string, string> = {
      MESHANICS: ROOT.replace(/\/$/, ''),
      GRPC: await freePort(),
      FILES: await freePort(),
      ENROLL: await freePort(),
      API: await freePort(),
      // npm from its cache where it can (the machine's network is the npm registry only).
      npm_config_prefer_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
      npm_config_loglevel: 'error',
      // Nothing from the user running the test: no operator CLI config, no agent/server env.
      MESHANICS_CONFIG: path.join(work, 'no-cli-config.json'),
    };
    const inherited = Object.entries(process.env).filter(([k]) => !k.startsWith('MESHANICS_') && !k.startsWith('npm_'));
    await writeFile(path.join(state, 'env'), [...inherited, ...Object.entries(env)].map(([k, v]) => `export ${k}='${String(v).replace(/'/g, `'\\''`)}'`).join('\n') + '\n');
    const outputs: string[] = [];
    for (const [i, block] of blocks.entries()) {
      const { code, output } = await runBlock(block, work, state);
      outputs.push(output);
      if (code !== 0) throw new Error(`walkthrough block ${i + 1} exited ${code}:\n${block}\n--- output ---\n${output.slice(-4000)}`);
    }
    const all = outputs.join('\n');
    // 5: a wrong option stops the agent with the path and the rule, exit 2.
    expect(all).toContain('MESH_ERR_CONFIG_INVALID: plugin "@acme/artifact-blob": plugins/1/options/maxBytes must be >= 1\nexit 2');
    // 6: HEALTHY, the file is live.
    expect(outputs[6]).toMatch(/healthy 1/);
    expect(outputs[6]).toContain('hello, device');
    // 7: the running server took the upgraded schema (the new field was accepted), HEALTHY again.
    expect(outputs[7]).toContain('"change": "upgraded"');
    expect(outputs[7]).toContain('published: hello@2.0.0');
    expect(outputs[7]).toMatch(/healthy 1/);
    // 8: the vendor's code, intact in the report; nothing changed on the device.
    expect(outputs[8]).toMatch(/dev-1 .*FAILED .*MESH_ERR_PLUGIN_FAILED: verify hook for kind \S+ failed: MESH_ERR_X_ACME_TOO_LARGE: 2000 bytes is more than maxBytes 1024/);
    expect(outputs[8]).toContain('exit 7');
    expect(outputs[8]!.trimEnd().endsWith('hello again')).toBe(true);
    // 9: rolled back to the previous file.
    expect(outputs[9]).toContain('ROLLED_BACK');
    expect(await readFile(path.join(work, 'device', 'artifacts', 'acme-blob', 'hello', 'hello.txt'), 'utf8')).toBe('hello again\n');
    // The plugin came from the agent's plugins directory, with its own copy of core.
    expect(JSON.parse(await readFile(path.join(work, 'device', 'plugins', 'node_modules', '@acme', 'artifact-blob', 'package.json'), 'utf8')).version).toBe('0.2.0');
  }, 900_000);
});
