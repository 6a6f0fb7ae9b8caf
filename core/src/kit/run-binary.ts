// Runs an allowlisted binary the only way the agent ever runs anything: an absolute path
// on the device's allowlist, a fixed argv, no shell, a minimal environment, in its own
// process group so that at the timeout the binary AND everything it forked are killed.
import { spawn } from 'node:child_process';
import type { Allowlist } from '../config/agent-config.js';
import { assertExecBinary } from './allowlist.js';

export interface RunBinaryResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The last bytes of stdout and stderr (capped), for reasons and logs. */
  stdoutTail: string;
  stderrTail: string;
}

export interface RunBinaryOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** How much of each stream to keep (from the end). */
  tailBytes?: number;
}

const MINIMAL_ENV = Object.freeze({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' });

function killGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    // A negative pid signals the whole process group the child leads (it was started detached).
    process.kill(-pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Keeps only the last `cap` bytes of a stream, so a chatty binary cannot fill memory. */
class TailBuffer {
  #chunks: Buffer[] = [];
  #size = 0;
  constructor(readonly cap: number) {}
  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    while (this.#size - (this.#chunks[0]?.length ?? 0) >= this.cap && this.#chunks.length > 1) {
      this.#size -= this.#chunks.shift()!.length;
    }
  }
  text(): string {
    const all = Buffer.concat(this.#chunks);
    return all.length <= this.cap ? all.toString() : `…${all.subarray(all.length - this.cap).toString()}`;
  }
}

export function runAllowlistedBinary(allowlist: Allowlist, argv: readonly string[], options: RunBinaryOptions): Promise<RunBinaryResult> {
  const [binary, ...args] = argv;
  if (!binary) return Promise.reject(new Error('argv is empty'));
  assertExecBinary(allowlist, binary);
  const stdout = new TailBuffer(options.tailBytes ?? 512);
  const stderr = new TailBuffer(options.tailBytes ?? 512);
  return new Promise((resolve) => {
    let timedOut = false;
    let spawnError: Error | undefined;
    // spawn, never a shell: argv goes to execve as is. detached: its own process group.
    const child = spawn(binary, args, {
      shell: false,
      env: { ...MINIMAL_ENV },
      cwd: '/',
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (c: Buffer) => stdout.push(c));
    child.stderr.on('data', (c: Buffer) => stderr.push(c));
    const stop = () => {
      timedOut = true;
      killGroup(child.pid);
    };
    const timer = setTimeout(stop, options.timeoutMs);
    const onAbort = () => stop();
    if (options.signal?.aborted) stop();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('exit', () => {
      clearTimeout(timer);
      // Whatever the binary left running in its group goes with it; a forked child holding
      // the output pipes open would otherwise keep 'close' from ever firing.
      killGroup(child.pid);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      let stderrText = stderr.text();
      if (spawnError) stderrText += `${stderrText ? '\n' : ''}${spawnError.message}`;
      resolve({
        exitCode: spawnError && code === null ? 127 : code,
        signal,
        timedOut,
        stdoutTail: stdout.text(),
        stderrTail: stderrText,
      });
    });
  });
}

/** "exit 3: <stderr tail>" — a compact description of a finished run. */
export function describeRun(result: RunBinaryResult): string {
  const how = result.timedOut ? 'timed out; process group killed' : result.exitCode !== null ? `exit ${result.exitCode}` : `killed by ${result.signal}`;
  const output = [result.stderrTail.trim(), result.stdoutTail.trim()].filter(Boolean).join(' | ');
  return output ? `${how}: ${output}` : how;
}
