// Child processes of the benchmark: forked workers that talk over IPC, and a registry of
// everything the harness started so a failure never leaves a process behind. Only processes
// started here are ever signalled, each by its own pid.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import readline from 'node:readline';

const started = new Set();

/** Remembers a child (anything with .proc) so stopAll() can end it. */
export function track(child) {
  started.add(child);
  child.proc.once('exit', () => started.delete(child));
  return child;
}

/** Ends every child still running: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopAll(graceMs = 5000) {
  await Promise.all(
    [...started].map(async (child) => {
      const p = child.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = once(p, 'exit');
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }),
  );
}

export class Worker {
  constructor(name, file, args = [], { execArgv = [], env = {} } = {}) {
    this.name = name;
    this.proc = fork(file, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv, env: { ...process.env, ...env } });
    this.pid = this.proc.pid;
    this.queues = new Map();
    this.waiters = new Map();
    this.listeners = new Map();
    this.output = [];
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        this.output.push(line);
        if (this.output.length > 200) this.output.shift();
        if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
      });
    }
    this.proc.on('message', (msg) => this.#deliver(msg));
    this.exited = once(this.proc, 'exit').then(([code, signal]) => {
      const err = new Error(`${name} exited (${code ?? signal}); last output:\n${this.output.slice(-20).join('\n')}`);
      for (const list of this.waiters.values()) for (const w of list) w.reject(err);
      this.waiters.clear();
      return { code, signal };
    });
    track(this);
  }

  #deliver(msg) {
    if (msg?.type === 'error') {
      const err = new Error(`${this.name}: ${msg.message}`);
      for (const list of this.waiters.values()) for (const w of list) w.reject(err);
      this.waiters.clear();
      this.failure = err;
      return;
    }
    for (const fn of this.listeners.get(msg.type) ?? []) fn(msg);
    const waiting = this.waiters.get(msg.type);
    if (waiting?.length) {
      waiting.shift().resolve(msg);
      return;
    }
    if (this.listeners.has(msg.type)) return;
    if (!this.queues.has(msg.type)) this.queues.set(msg.type, []);
    this.queues.get(msg.type).push(msg);
  }

  send(msg) {
    this.proc.send(msg);
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }

  /** The next message of `type` (one that already arrived counts). */
  next(type, timeoutMs = 120_000) {
    if (this.failure) return Promise.reject(this.failure);
    const queued = this.queues.get(type);
    if (queued?.length) return Promise.resolve(queued.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.waiters.get(type) ?? [];
        this.waiters.set(
          type,
          list.filter((w) => w.resolve !== done),
        );
        reject(new Error(`${this.name}: no "${type}" message within ${timeoutMs} ms; last output:\n${this.output.slice(-20).join('\n')}`));
      }, timeoutMs);
      const done = (msg) => {
        clearTimeout(timer);
        resolve(msg);
      };
      if (!this.waiters.has(type)) this.waiters.set(type, []);
      this.waiters.get(type).push({ resolve: done, reject: (e) => (clearTimeout(timer), reject(e)) });
    });
  }

  /** Sends `msg` and waits for the reply of `replyType`. */
  request(msg, replyType, timeoutMs) {
    const reply = this.next(replyType, timeoutMs);
    this.send(msg);
    return reply;
  }

  async stop(graceMs = 5000) {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }
}

/** Worker side: report an uncaught failure to the parent, and exit when the parent goes away. */
export function workerMain(handler) {
  process.on('disconnect', () => process.exit(0));
  const fail = (err) => {
    try {
      process.send?.({ type: 'error', message: err?.stack || String(err) });
    } finally {
      setTimeout(() => process.exit(1), 100);
    }
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  process.on('message', (msg) => {
    Promise.resolve()
      .then(() => handler(msg))
      .catch(fail);
  });
}
