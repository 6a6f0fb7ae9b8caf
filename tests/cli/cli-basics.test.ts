// The `meshanics` operator CLI as a process against a real server and its REST API: every
// command's --help, usage errors (exit 2), login and the config file (mode 0600, env overrides),
// auth errors (exit 3), not found (exit 4), devices, enrollment tokens and decommissioning.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, type CliEnvironment, cliEnvironment, meshanics } from './harness.js';

let env: CliEnvironment;
let root: string;
let server: ApiServer;
let adminKey: string;
let readerKey: string;
let otherFleetKey: string;
let admin: Record<string, string>;

const json = <T = any>(r: { stdout: string }): T => JSON.parse(r.stdout) as T;

beforeAll(async () => {
  env = await cliEnvironment('meshanics-cli-basics-', ['sim-1', 'sim-2', 'sim-3', 'sim-4', 'idle-1']);
  ({ root, server, adminKey, readerKey, otherFleetKey, admin } = env);
  for (const s of env.sims) s.start();
});

afterAll(async () => {
  await env?.close();
});

describe('meshanics CLI: help, login, auth, devices, enrollment tokens', () => {
  it('answers --help for every command and group, and exits 2 on usage errors', async () => {
    const top = await meshanics(['--help']);
    expect(top.code, top.stderr).toBe(0);
    expect(top.stdout).toContain('Exit codes:');
    const commands = [...top.stdout.matchAll(/^ {2}([a-z-]+(?: [a-z-]+)?) {2,}/gm)].map((m) => m[1]!).filter((c) => !c.startsWith('-'));
    for (const expected of [
      'login',
      'devices ls',
      'devices show',
      'devices decommission',
      'enroll-token create',
      'enroll-token ls',
      'enroll-token revoke',
      'artifacts publish',
      'rollouts create',
      'rollouts show',
      'rollouts watch',
      'rollouts approve',
      'rollouts resume',
      'rollouts abort',
      'logs request',
      'logs download',
      'audit export',
      'audit verify',
    ]) {
      expect(commands).toContain(expected);
    }
    const groups = [...new Set(commands.filter((c) => c.includes(' ')).map((c) => c.split(' ')[0]!))];
    expect(groups).toEqual(['devices', 'enroll-token', 'artifacts', 'groups', 'rollouts', 'logs', 'audit']);
    // As processes: every group, and commands whose help the tests below lean on.
    const asProcesses = [...groups.map((g) => [g, '--help']), ['help', 'rollouts', 'watch'], ['artifacts', 'publish', '-h'], ['login', '--help'], ['audit', 'verify', '--help']];
    const results = await Promise.all(asProcesses.map((args) => meshanics(args)));
    for (const [i, r] of results.entries()) {
      expect(r.code, `meshanics ${asProcesses[i]!.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: meshanics ${asProcesses[i]![0] === 'help' ? 'rollouts watch' : asProcesses[i]![0]}`));
    }
    expect(results.find((r) => r.stdout.startsWith('Usage: meshanics rollouts watch'))!.stdout).toContain('exit 7');
    // Every command, through the same entry point in this process (spawning ~30 Node processes
    // would only measure the machine).
    const { main } = await import('../../cli/dist/index.js');
    for (const c of commands) {
      let out = '';
      let err = '';
      const code = await main([...c.split(' '), '--help'], {
        stdout: { write: (t: string) => ((out += t), true) } as unknown as NodeJS.WritableStream,
        stderr: { write: (t: string) => ((err += t), true) } as unknown as NodeJS.WritableStream,
      });
      expect(code, `meshanics ${c} --help: ${err}`).toBe(0);
      expect(out).toMatch(new RegExp(`^Usage: meshanics ${c}\\b`));
      expect(out).toContain('--json');
    }

    expect((await meshanics([])).code).toBe(2);
    const unknown = await meshanics(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect((await meshanics(['rollouts'])).code).toBe(2);
    const badOption = await meshanics(['devices', 'ls', '--colour'], admin);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain("Unknown option '--colour'");
    const missing = await meshanics(['artifacts', 'publish', path.join(root, 'nope.bin'), '--name', 'x', '--version', '1', '--kind', 'model'], admin);
    expect(missing.code).toBe(2);
    expect((await meshanics(['rollouts', 'show'], admin)).code).toBe(2);
  });

  it('logs in with the key on stdin, stores it 0600, and env variables override the file', async () => {
    const config = path.join(root, 'home', 'meshanics', 'config.json');
    const none = await meshanics(['whoami', '--config', config]);
    expect(none.code).toBe(3);
    expect(none.stderr).toContain('meshanics login');

    const refused = await meshanics(['login', '--server', server.api, '--config', config], {}, 'mesh_key_not-a-real-key\n');
    expect(refused.code).toBe(3);
    await expect(stat(config)).rejects.toThrow();

    const login = await meshanics(['login', '--server', `${server.api}/api/v1/`, '--config', config], {}, `${readerKey}\n`);
    expect(login.stderr).toBe('');
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain('as reader (fleet lab)');
    expect((await stat(config)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(config, 'utf8'))).toEqual({ url: server.api, apiKey: readerKey, fleet: 'lab' });

    const me = await meshanics(['whoami', '--json', '--config', config]);
    expect(me.code, me.stderr).toBe(0);
    expect(json(me)).toMatchObject({ name: 'reader', fleet: 'lab', approve: false });
    // The key's fleet became the default --fleet.
    const ls = await meshanics(['devices', 'ls', '--json', '--config', config]);
    expect(
      json(ls)
        .items.map((d: { name: string }) => d.name)
        .sort(),
    ).toEqual(['idle-1', 'sim-1', 'sim-2', 'sim-3', 'sim-4']);

    const overridden = await meshanics(['whoami', '--json', '--config', config], { MESHANICS_API_KEY: adminKey });
    expect(json(overridden).name).toBe('admin');
    const badEnv = await meshanics(['whoami', '--config', config], { MESHANICS_API_KEY: 'mesh_key_revoked-or-wrong' });
    expect(badEnv.code).toBe(3);
    expect(badEnv.stderr).toContain('invalid API key');
    const unreachable = await meshanics(['whoami', '--config', config, '--server', 'http://127.0.0.1:9']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain('cannot reach http://127.0.0.1:9');

    expect((await meshanics(['logout', '--config', config])).code).toBe(0);
    expect(JSON.parse(await readFile(config, 'utf8')).apiKey).toBeUndefined();
  });

  it('maps a missing permission (403) to exit 3 and another fleet (404) to exit 4', async () => {
    const reader = { MESHANICS_API_URL: server.api, MESHANICS_API_KEY: readerKey };
    const forbidden = await meshanics(['artifacts', 'ls'], reader);
    expect(forbidden.code).toBe(3);
    expect(forbidden.stderr).toContain('missing permission: artifacts.read');
    expect((await meshanics(['enroll-token', 'create', '--fleet', 'lab'], reader)).code).toBe(3);
    expect((await meshanics(['audit', 'verify'], reader)).code).toBe(3);
    const other = { MESHANICS_API_URL: server.api, MESHANICS_API_KEY: otherFleetKey };
    const hidden = await meshanics(['devices', 'show', 'lab/sim-1'], other);
    expect(hidden.code).toBe(4);
    expect(hidden.stderr).toContain('no device lab/sim-1');
  });

  it('lists and shows devices as tables and JSON', async () => {
    const table = await meshanics(['devices', 'ls', '--fleet', 'lab'], admin);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^FLEET\s+NAME\s+STATUS\s+LAST SEEN\s+AGENT\s+TAGS$/);
    expect(table.stdout).toMatch(/lab\s+sim-1\s+online\s+\d+s ago\s+0\.1\.0-sim\s+sim=true/);
    const online = await meshanics(['devices', 'ls', '--fleet', 'lab', '--online', '--json'], admin);
    expect(json(online).items.map((d: { name: string }) => d.name)).toContain('sim-4');
    const page = await meshanics(['devices', 'ls', '--limit', '2', '--json'], admin);
    expect(json(page)).toMatchObject({ limit: 2, offset: 0, total: 5 });
    const all = await meshanics(['devices', 'ls', '--limit', '2', '--all', '--json'], admin);
    expect(json(all).items).toHaveLength(5);
    const show = await meshanics(['devices', 'show', 'sim-1', '--fleet', 'lab'], admin);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain('device:');
    expect(show.stdout).toMatch(/hardware:\s+model=sim-board/);
    const detail = await meshanics(['devices', 'show', 'lab/sim-1', '--json'], admin);
    expect(json(detail)).toMatchObject({ name: 'sim-1', fleet: 'lab', online: true, agentVersion: '0.1.0-sim' });
    expect((await meshanics(['devices', 'show', 'lab/ghost'], admin)).code).toBe(4);
  });

  it('creates, lists and revokes enrollment tokens', async () => {
    const created = await meshanics(['enroll-token', 'create', '--fleet', 'lab', '--uses', '3', '--expires', '2h', '--json'], admin);
    expect(created.code, created.stderr).toBe(0);
    const token = json(created);
    expect(token).toMatchObject({ fleet: 'lab', uses: 3 });
    expect(token.token).toMatch(/^mesh_enr_/);
    expect(Date.parse(token.expiresAt) - Date.now()).toBeGreaterThan(7000_000);
    const ls = await meshanics(['enroll-token', 'ls', '--fleet', 'lab', '--json'], admin);
    const listed = json(ls).items.find((t: { id: string }) => t.id === token.id);
    expect(listed).toMatchObject({ status: 'active', usesLeft: 3 });
    expect(JSON.stringify(json(ls))).not.toContain(token.token);
    const human = await meshanics(['enroll-token', 'ls', '--fleet', 'lab'], admin);
    expect(human.stdout).toMatch(new RegExp(`${token.id}\\s+lab\\s+active\\s+3/3`));
    const revoked = await meshanics(['enroll-token', 'revoke', token.id], admin);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain('revoked');
    const after = await meshanics(['enroll-token', 'ls', '--json'], admin);
    expect(json(after).items.find((t: { id: string }) => t.id === token.id).status).toBe('revoked');
    expect((await meshanics(['enroll-token', 'revoke', 'no-such-token'], admin)).code).toBe(4);
  });

  it('decommissions only with --yes', async () => {
    const unconfirmed = await meshanics(['devices', 'decommission', 'lab/sim-4'], admin);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain('--yes');
    const done = await meshanics(['devices', 'decommission', 'lab/sim-4', '--yes', '--json'], admin);
    expect(done.code, done.stderr).toBe(0);
    expect(json(done)).toMatchObject({ fleet: 'lab', name: 'sim-4' });
    const ls = await meshanics(['devices', 'ls', '--fleet', 'lab'], admin);
    expect(ls.stdout).toMatch(/sim-4\s+decommissioned/);
  });
});
