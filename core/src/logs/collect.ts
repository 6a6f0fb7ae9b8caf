// Log collection reads from exactly one allowlisted source, whatever a request says: the
// agent's own systemd journal (journalctl -u <its unit>) or, where there is no journald,
// the agent's own log file in its data dir. A request chooses only the time window and a
// byte budget.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import readline from 'node:readline';
import { MeshError } from '../errors.js';

export type LogSource =
  | {
      kind: 'journald';
      unit: string;
      journalctl?: string;
      /**
       * A directory of journal files to read instead of the system journal (journalctl
       * --directory): for tests, which write a real journal of their own. Still only the unit's.
       */
      directory?: string;
    }
  | { kind: 'file'; path: string };

export interface LogWindow {
  /** Epoch ms; undefined means unbounded. */
  since?: number;
  until?: number;
  maxBytes: number;
}

/** Reads whole lines while they fit the budget; the first line that does not fit ends it. */
class Budget {
  readonly parts: Buffer[] = [];
  size = 0;
  full = false;
  constructor(readonly max: number) {}
  add(line: string): boolean {
    const buf = Buffer.from(`${line}\n`);
    if (this.size + buf.length > this.max) {
      this.full = true;
      return false;
    }
    this.parts.push(buf);
    this.size += buf.length;
    return true;
  }
}

async function fromFile(file: string, window: LogWindow): Promise<Buffer> {
  const budget = new Budget(window.maxBytes);
  let input: ReturnType<typeof createReadStream> | undefined;
  try {
    input = createReadStream(file, { encoding: 'utf8' });
    await new Promise<void>((resolve, reject) => {
      input!.once('open', () => resolve());
      input!.once('error', reject);
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  }
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    let time: number | undefined;
    try {
      time = (JSON.parse(line) as { time?: number }).time;
    } catch {
      time = undefined;
    }
    if (window.since !== undefined && (time === undefined || time < window.since)) continue;
    if (window.until !== undefined && (time === undefined || time > window.until)) continue;
    if (!budget.add(line)) break;
  }
  input.destroy();
  return Buffer.concat(budget.parts);
}

function fromJournal(source: { unit: string; journalctl?: string; directory?: string }, window: LogWindow): Promise<Buffer> {
  const args = ['--unit', source.unit, '--output', 'json', '--no-pager', '--quiet'];
  if (source.directory) args.push('--directory', source.directory);
  if (window.since !== undefined) args.push('--since', `@${Math.floor(window.since / 1000)}`);
  if (window.until !== undefined) args.push('--until', `@${Math.ceil(window.until / 1000)}`);
  return new Promise((resolve, reject) => {
    const budget = new Budget(window.maxBytes);
    // Fixed binary and argv, no shell; the unit is the agent's own, from its config.
    const child = spawn(source.journalctl ?? '/usr/bin/journalctl', args, { shell: false, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-500);
    });
    lines.on('line', (line) => {
      if (!budget.full && !budget.add(line)) child.kill('SIGTERM');
    });
    child.on('error', (err) => reject(new MeshError('MESH_ERR_LOGS_FAILED', `journalctl: ${err.message}`, { cause: err })));
    child.on('close', (code) => {
      if (code !== 0 && !budget.full) reject(new MeshError('MESH_ERR_LOGS_FAILED', `journalctl exited ${code}: ${stderr.trim()}`));
      else resolve(Buffer.concat(budget.parts));
    });
  });
}

export async function collectLogs(source: LogSource, window: LogWindow): Promise<Buffer> {
  return source.kind === 'journald' ? fromJournal(source, window) : fromFile(source.path, window);
}
