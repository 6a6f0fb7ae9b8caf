// Starts the real server and agent binaries as child processes on 127.0.0.1 and drives the
// server's CLI. Used by the end-to-end tests and by `npm run demo`.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SERVER_CLI = path.join(ROOT, 'server/dist/cli.js');
export const AGENT_CLI = path.join(ROOT, 'core/dist/cli/agent-cli.js');
const execFileP = promisify(execFile);

/** Runs `meshanics-server ARGS` to completion and parses its JSON output. */
export async function serverCli(dataDir, args) {
  try {
    const { stdout } = await execFileP(process.execPath, [SERVER_CLI, ...args, '--data-dir', dataDir], {
      maxBuffer: 16 * 1024 * 1024,
    });
    const text = stdout.trim();
    return text ? JSON.parse(text) : undefined;
  } catch (err) {
    throw new Error(`meshanics-server ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
}

/**
 * A child process with its output lines (stdout and stderr) kept for waitForLine.
 * `maxLines` bounds what is kept, for long-running processes (benchmarks); default: all.
 */
export class Child {
  constructor(name, proc, { maxLines = Infinity } = {}) {
    this.name = name;
    this.proc = proc;
    this.pid = proc.pid;
    this.lines = [];
    this.waiters = [];
    this.exit = once(proc, 'exit').then(([code, signal]) => ({ code, signal }));
    for (const stream of [proc.stdout, proc.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        this.lines.push(line);
        if (this.lines.length > maxLines) this.lines.shift();
        if (process.env.MESHANICS_E2E_VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
        for (const w of [...this.waiters]) w(line);
      });
    }
  }

  /** Resolves with the first line (parsed if JSON) that satisfies `predicate`. */
  waitForLine(predicate, timeoutMs = 20_000) {
    const parse = (l) => {
      try {
        return JSON.parse(l);
      } catch {
        return l;
      }
    };
    const seen = this.lines.map(parse).find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name}: no matching line within ${timeoutMs} ms; last lines:\n${this.lines.slice(-15).join('\n')}`));
      }, timeoutMs);
      const waiter = (line) => {
        const value = parse(line);
        if (predicate(value)) {
          cleanup();
          resolve(value);
        }
      };
      const onExit = this.exit.then(({ code, signal }) => {
        cleanup();
        reject(new Error(`${this.name} exited (${code ?? signal}) before the expected line; last lines:\n${this.lines.slice(-15).join('\n')}`));
      });
      void onExit;
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      this.waiters.push(waiter);
    });
  }

  /** The exit if it comes within `timeoutMs`, else undefined (the process left running). */
  async exitWithin(timeoutMs) {
    let timer;
    const late = new Promise((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
    const result = await Promise.race([this.exit, late]);
    clearTimeout(timer);
    return result;
  }

  async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exit;
    this.proc.kill(signal);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const result = await this.exit;
    clearTimeout(timer);
    return result;
  }
}

/** Runs `node [EXECARGV] FILE ARGS` with `env` added to this process's environment. */
export function spawnNode(name, file, args, env = {}, { maxLines, execArgv = [] } = {}) {
  const proc = spawn(process.execPath, [...execArgv, file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  return new Child(name, proc, { maxLines });
}

/** `serve` on DATADIR with the device API, artifact and enrollment listeners on ephemeral ports; `extraArgs` after them (a later flag wins). */
export function serveArgs(dataDir, extraArgs = []) {
  return ['serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--artifact-listen', '127.0.0.1:0', '--enroll-listen', '127.0.0.1:0', ...extraArgs];
}

/** Starts `meshanics-server serve` on ephemeral ports; resolves once it listens. */
export async function startServer(dataDir, { heartbeatSeconds = 1, extraArgs = [], execArgv = [] } = {}) {
  const child = spawnNode('server', SERVER_CLI, serveArgs(dataDir, ['--heartbeat-interval', String(heartbeatSeconds), ...extraArgs]), {}, { execArgv });
  // Under --workers every worker says 'server listening' with its slot; the primary's one line
  // comes once all of them listen, with their pids.
  const line = await child.waitForLine((l) => l && (l.msg === 'workers listening' || (l.msg === 'server listening' && l.worker === undefined)), 60_000);
  child.workerPids = line.pids ?? [];
  child.grpc = line.grpc;
  child.artifacts = line.artifacts;
  child.enroll = line.enroll;
  child.api = line.api;
  return child;
}

/** Starts `meshanics-agent ARGS` (for an enrolled agent: `run --data-dir DIR` and nothing else). */
export function spawnAgent(args, { env = {}, cli = AGENT_CLI } = {}) {
  return spawnNode('agent', cli, args, env);
}

/**
 * The arguments of `meshanics-agent run` for the credentials `device issue-cert` wrote into
 * `certDir`: `server` gives the device API (`grpc`) and artifact (`artifacts`) addresses.
 * Callers add their own flags after these.
 */
export function agentRunArgs(server, certDir, dataDir) {
  return [
    'run',
    '--server',
    server.grpc,
    '--artifact-server',
    server.artifacts,
    '--cert',
    path.join(certDir, 'device.crt'),
    '--key',
    path.join(certDir, 'device.key'),
    '--ca',
    path.join(certDir, 'ca.crt'),
    '--tuf-root',
    path.join(certDir, 'tuf-root.json'),
    '--data-dir',
    dataDir,
  ];
}

/** Starts `meshanics-agent run` with the credentials `device issue-cert` wrote into `certDir`. */
export function startAgent(server, certDir, dataDir, { extraArgs = [], env = {}, execArgv = [] } = {}) {
  return spawnNode('agent', AGENT_CLI, [...agentRunArgs(server, certDir, dataDir), ...extraArgs], env, { execArgv });
}

export const TERMINAL = new Set(['HEALTHY', 'ROLLED_BACK', 'FAILED']);

/**
 * Polls the server's view of an assignment until it is terminal; calls `onState` for each
 * state the server recorded, in order, as soon as it sees it.
 */
export async function waitForAssignment(dataDir, assignmentId, { timeoutMs = 60_000, onState } = {}) {
  const until = Date.now() + timeoutMs;
  let printed = 0;
  for (;;) {
    const view = await serverCli(dataDir, ['assignment', 'show', assignmentId]);
    const reports = view.reports ?? [];
    for (; printed < reports.length; printed++) onState?.(reports[printed]);
    if (TERMINAL.has(view.state)) return view;
    if (Date.now() > until) throw new Error(`assignment ${assignmentId} still ${view.state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
