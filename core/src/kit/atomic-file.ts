// Durable file primitives. Every piece of state the agent keeps goes through these so a
// power cut leaves either the old bytes or the new bytes, never a torn file: write a temp
// file in the same directory, fsync it, rename it over the target, fsync the directory
// (rename is atomic within one file system; the directory fsync makes the rename durable).
//
// Each primitive is written once, as the sequence of its file-system steps (a generator of
// Step), and run by one of two drivers: with fs.promises (the agent and its plugins, whose
// event loop keeps serving meanwhile) or with fs's *Sync calls (the server's synchronous
// callers: its TUF repository, key and certificate files, CLI output). The order of writes,
// fsyncs, renames and clean-ups is the same for both because it exists once.
import { randomBytes } from 'node:crypto';
import * as fsSync from 'node:fs';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';

/** Keys, credentials, state: readable by the owner only (writeFileAtomic's default). */
export const PRIVATE_FILE_MODE = 0o600;
/** Certificates, public metadata: readable by everyone. */
export const PUBLIC_FILE_MODE = 0o644;
export const PRIVATE_DIR_MODE = 0o700;

/** One file-system call; a driver performs it and hands back its result (a handle for `open`). */
type Step =
  | { op: 'open'; file: string; flags: string | number; mode?: number }
  | { op: 'writeAndSync'; handle: unknown; data: string | Uint8Array }
  | { op: 'sync'; handle: unknown }
  | { op: 'close'; handle: unknown }
  | { op: 'rename'; from: string; to: string }
  | { op: 'rm'; file: string }
  | { op: 'mkdir'; dir: string; mode: number };
type Steps<T> = Generator<Step, T, unknown>;
type Driver<R> = { [K in Step['op']]: (step: Extract<Step, { op: K }>) => R };

/** Yields one step and types its result. */
function* call<T>(step: Step): Steps<T> {
  return (yield step) as T;
}

const SYNC: Driver<unknown> = {
  open: (s) => fsSync.openSync(s.file, s.flags, s.mode),
  writeAndSync: (s) => {
    fsSync.writeFileSync(s.handle as number, s.data);
    fsSync.fsyncSync(s.handle as number);
  },
  sync: (s) => fsSync.fsyncSync(s.handle as number),
  close: (s) => fsSync.closeSync(s.handle as number),
  rename: (s) => fsSync.renameSync(s.from, s.to),
  rm: (s) => fsSync.rmSync(s.file, { force: true }),
  mkdir: (s) => fsSync.mkdirSync(s.dir, { recursive: true, mode: s.mode }),
};

const ASYNC: Driver<Promise<unknown>> = {
  open: (s) => fs.open(s.file, s.flags, s.mode),
  writeAndSync: async (s) => {
    await (s.handle as fs.FileHandle).writeFile(s.data);
    await (s.handle as fs.FileHandle).sync();
  },
  sync: (s) => (s.handle as fs.FileHandle).sync(),
  close: (s) => (s.handle as fs.FileHandle).close(),
  rename: (s) => fs.rename(s.from, s.to),
  rm: (s) => fs.rm(s.file, { force: true }),
  mkdir: (s) => fs.mkdir(s.dir, { recursive: true, mode: s.mode }),
};

function runSync<T>(steps: Steps<T>): T {
  let next = steps.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = (SYNC[next.value.op] as (step: Step) => unknown)(next.value);
    } catch (err) {
      next = steps.throw(err);
      continue;
    }
    next = steps.next(result);
  }
  return next.value;
}

async function runAsync<T>(steps: Steps<T>): Promise<T> {
  let next = steps.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = await (ASYNC[next.value.op] as (step: Step) => Promise<unknown>)(next.value);
    } catch (err) {
      next = steps.throw(err);
      continue;
    }
    next = steps.next(result);
  }
  return next.value;
}

function* fsyncDirSteps(dir: string): Steps<void> {
  const handle = yield* call<unknown>({ op: 'open', file: dir, flags: constants.O_RDONLY | constants.O_DIRECTORY });
  try {
    yield { op: 'sync', handle };
  } finally {
    yield { op: 'close', handle };
  }
}

function* writeFileAtomicSteps(target: string, data: string | Uint8Array, mode: number): Steps<void> {
  const temp = tempSibling(target);
  // The mode is set at creation, so a private key is never readable by others, even briefly.
  const handle = yield* call<unknown>({ op: 'open', file: temp, flags: 'wx', mode });
  try {
    yield { op: 'writeAndSync', handle, data };
  } catch (err) {
    try {
      yield { op: 'close', handle };
    } catch {
      // the write's error is the one to report
    }
    yield { op: 'rm', file: temp };
    throw err;
  }
  yield { op: 'close', handle };
  try {
    yield { op: 'rename', from: temp, to: target };
  } catch (err) {
    yield { op: 'rm', file: temp };
    throw err;
  }
  yield* fsyncDirSteps(path.dirname(target));
}

function* ensureDirDurableSteps(dir: string, mode: number): Steps<void> {
  const first = yield* call<string | undefined>({ op: 'mkdir', dir, mode });
  if (first === undefined) return;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    yield* fsyncDirSteps(path.dirname(d));
    if (d === path.resolve(first)) break;
  }
}

function* renameDurableSteps(from: string, to: string): Steps<void> {
  yield { op: 'rename', from, to };
  yield* fsyncDirSteps(path.dirname(to));
}

export async function fsyncDir(dir: string): Promise<void> {
  await runAsync(fsyncDirSteps(dir));
}

/** fsyncDir for synchronous callers (the server's TUF metadata writes). */
export function fsyncDirSync(dir: string): void {
  runSync(fsyncDirSteps(dir));
}

/** A sibling temp name: same directory (so rename stays atomic), hidden, unique. */
export function tempSibling(target: string, label = 'tmp'): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.${label}-${randomBytes(6).toString('hex')}`);
}

/** Sets `file`'s mode and flushes it to disk: what a staged temp file needs before its rename. */
export async function chmodAndSync(file: string, mode: number): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Whether a directory entry is a tempSibling name: a write in progress (or one a crash left behind). */
export function isTempSibling(name: string, label = 'tmp'): boolean {
  return name.startsWith('.') && new RegExp(`\\.${label}-[0-9a-f]{12}$`).test(name);
}

/** Writes `data` to `target` atomically and durably; the file is private unless `mode` says otherwise. */
export async function writeFileAtomic(target: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
  await runAsync(writeFileAtomicSteps(target, data, options.mode ?? PRIVATE_FILE_MODE));
}

/** writeFileAtomic for synchronous callers (the server's TUF repository, key files, CLI output). */
export function writeFileAtomicSync(target: string, data: string | Uint8Array, options: { mode?: number } = {}): void {
  runSync(writeFileAtomicSteps(target, data, options.mode ?? PRIVATE_FILE_MODE));
}

export async function writeJsonAtomic(target: string, value: unknown, options: { mode?: number } = {}): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, 2) + '\n', options);
}

/** Renames a fully written and fsynced file into place, then makes the rename durable. */
export function renameDurableSync(from: string, to: string): void {
  runSync(renameDurableSteps(from, to));
}

/** mkdir -p, and the new directory entries themselves survive a power cut (each new dir's parent is fsynced). */
export function ensureDirDurableSync(dir: string, mode = 0o755): void {
  runSync(ensureDirDurableSteps(dir, mode));
}

/** mkdir -p with owner-only access, enforced on a directory that already existed too. */
export function ensurePrivateDirSync(dir: string): void {
  fsSync.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  // mkdir's mode is filtered by the umask and ignored for an existing dir: enforce it.
  fsSync.chmodSync(dir, PRIVATE_DIR_MODE);
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Points the symlink `link` at `target` in one rename (a new link beside it, renamed over
 * the old one), so readers see the old target or the new one, never no link.
 */
export async function swapSymlink(link: string, target: string): Promise<void> {
  const temp = tempSibling(link);
  await fs.symlink(target, temp);
  try {
    await fs.rename(temp, link);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(link));
}

/** The target of a symlink, or undefined when there is none. */
export async function readSymlink(link: string): Promise<string | undefined> {
  try {
    return await fs.readlink(link);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
