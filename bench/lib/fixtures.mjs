// Setting up what a benchmark runs against: server data dirs, provisioned devices, the real
// server and agent processes (started as the end-to-end tests start them), the echo server.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initDataDir } from '@meshanics/server';
import { SERVER_CLI, spawnNode, startAgent, startServer } from '../../scripts/lib/processes.mjs';
import { progress } from './log.mjs';
import { track, Worker } from './workers.mjs';

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
export const workerPath = (name) => path.join(BENCH_DIR, 'workers', name);

/**
 * Creates (or completes) a server data dir: database, device CA, server certificate, TUF
 * repository. `databaseUrl`: the database lives in PostgreSQL instead of the data dir.
 */
export async function initServerDataDir(dataDir, { databaseUrl } = {}) {
  const ctx = await initDataDir({ dataDir, ...(databaseUrl ? { databaseUrl } : {}) });
  await ctx.close();
}

/** The server's TLS material, as the echo server and the inspecting proxy use it. */
export function serverPki(dataDir) {
  const pki = path.join(dataDir, 'pki');
  return {
    caPem: readFileSync(path.join(pki, 'ca.crt'), 'utf8'),
    keyPem: readFileSync(path.join(pki, 'server.key'), 'utf8'),
    certPem: readFileSync(path.join(pki, 'server.crt'), 'utf8'),
  };
}

/**
 * Provisions `count` devices named PREFIX00000.. with provisionDevice, spread over `workers`
 * processes (certificate issuance is CPU-bound); returns the credential files, one per worker.
 */
export async function provisionDevices(suite, dataDir, { fleet, prefix, count, workers = 2, outDir, databaseUrl }) {
  mkdirSync(outDir, { recursive: true });
  const per = Math.ceil(count / workers);
  const slices = [];
  for (let from = 0, k = 0; from < count; from += per, k++) {
    slices.push({ from, count: Math.min(per, count - from), file: path.join(outDir, `creds-${prefix}${k}.json`) });
  }
  const done = new Map();
  const started = Date.now();
  let lastPrint = 0;
  await Promise.all(
    slices.map(async (s, k) => {
      const w = new Worker(`provision-${k}`, workerPath('provision.mjs'), [dataDir, fleet, prefix, String(s.from), String(s.count), s.file], {
        env: databaseUrl ? { MESHANICS_DATABASE_URL: databaseUrl } : {},
      });
      w.on('progress', (m) => {
        done.set(k, m.done);
        const total = [...done.values()].reduce((a, b) => a + b, 0);
        if (Date.now() - lastPrint > 5000) {
          lastPrint = Date.now();
          progress(suite, `provisioned ${total}/${count} devices (${((Date.now() - started) / 1000).toFixed(0)} s)`);
        }
      });
      await w.next('done', 30 * 60_000);
      await w.exited;
    }),
  );
  progress(suite, `provisioned ${count} devices with their own certificates in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return slices;
}

export function loadCreds(slices) {
  return slices.flatMap((s) => JSON.parse(readFileSync(s.file, 'utf8')));
}

let serveOptions;
/** The options `serve --help` lists (the server grows endpoints; each must bind an ephemeral port here). */
export function serveSupports(option) {
  if (serveOptions === undefined) {
    try {
      serveOptions = execFileSync(process.execPath, [SERVER_CLI, 'serve', '--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      serveOptions = `${err.stdout ?? ''}${err.stderr ?? ''}`;
    }
  }
  return serveOptions.includes(option);
}

/**
 * BENCH_SERVER_NODE_ARGS (space-separated): node flags for the server under test only, e.g.
 * '--cpu-prof --cpu-prof-dir=/tmp/prof' (the profile is written when serve exits on the suite's
 * SIGTERM). Every suite that starts a server passes these; run.mjs records them in the result.
 */
export function serverNodeArgs() {
  return (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
}

/**
 * `meshanics-server serve` on ephemeral loopback ports (scripts/lib/processes.mjs), on the
 * data dir's SQLite database or, with `databaseUrl`, on PostgreSQL; `workers` > 1: `serve
 * --workers` (the child's workerPids name them).
 */
export async function startMeshServer(dataDir, { heartbeatSeconds = 30, databaseUrl, api = false, workers = 1 } = {}) {
  const extraArgs = [
    ...(workers > 1 ? ['--workers', String(workers)] : []),
    ...(serveSupports('--enroll-listen') ? ['--enroll-listen', '127.0.0.1:0'] : []),
    ...(databaseUrl ? ['--database-url', databaseUrl] : []),
    // The REST API, for its /metrics (the server's own counters, e.g. heartbeat cache hits).
    ...(api ? ['--api-listen', '127.0.0.1:0'] : []),
  ];
  const server = await startServer(dataDir, { heartbeatSeconds, extraArgs, execArgv: serverNodeArgs() });
  return track(server);
}

/**
 * The node flags the agent's systemd unit starts it with (its `NODE_OPTIONS`), so the
 * benchmarks measure the agent as installed. BENCH_AGENT_UNIT_FLAGS=0 leaves them out (to
 * measure what they are worth).
 */
export function agentUnitNodeFlags() {
  if (process.env.BENCH_AGENT_UNIT_FLAGS === '0') return [];
  const unit = readFileSync(path.join(BENCH_DIR, '..', 'core', 'systemd', 'meshanics-agent.service'), 'utf8');
  const m = /^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(unit);
  return m ? m[1].split(' ').filter(Boolean) : [];
}

/**
 * `meshanics-agent run` with the credentials `device issue-cert` wrote, with the unit's node
 * flags. BENCH_AGENT_NODE_ARGS (space-separated) are added for the agent's node, and only
 * for it, e.g. to profile it: BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof'
 * (NODE_OPTIONS refuses --cpu-prof).
 */
export function startMeshAgent(server, certDir, agentDir, artifactServer) {
  const target = artifactServer ? { ...server, artifacts: artifactServer } : server;
  const execArgv = [...agentUnitNodeFlags(), ...(process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean)];
  return track(startAgent(target, certDir, agentDir, { execArgv }));
}

/**
 * A node script as a child process (scripts/lib/processes.mjs, the harness the end-to-end
 * tests use), its last 500 output lines kept for waitForLine, stopped with the suite.
 */
export function startNode(name, file, args = [], env = {}, { execArgv = [] } = {}) {
  return track(spawnNode(name, file, args, env, { maxLines: 500, execArgv }));
}

/** The bare grpc-js mTLS echo server, with the data dir's certificates. */
export async function startEchoServer(dataDir, { heartbeatSeconds = 30 } = {}) {
  const echo = startNode('echo', workerPath('echo-server.mjs'), [dataDir, String(heartbeatSeconds)]);
  const line = await echo.waitForLine((l) => l && l.msg === 'echo listening');
  echo.grpc = line.grpc;
  return echo;
}
