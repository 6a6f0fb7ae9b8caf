// The few Docker Engine API calls the plugin makes, through dockerode, each with fixed
// arguments (never a shell, never a command line). Works against docker and against podman's
// Docker-compatible service alike.
import type Docker from 'dockerode';
import { MeshError } from '@meshanics/core';

export type Engine = Docker;
export type ContainerInfo = Docker.ContainerInfo;
export type ContainerInspectInfo = Docker.ContainerInspectInfo;
export type ImageInspectInfo = Docker.ImageInspectInfo;
export type ContainerCreateOptions = Docker.ContainerCreateOptions;

/** The clients of one runtime socket: `api` has the idle guard, `pull` none (a big layer may be silent long). */
export interface Engines {
  api: Engine;
  pull: Engine;
  socketPath: string;
}

// dockerode (with docker-modem, ssh2, tar-fs) is in the default plugin bundle but most
// devices never receive a container artifact: it is imported at the first container
// assignment, not when the agent starts (docs/benchmarks.md, idle agent memory).
let dockerode: Promise<typeof Docker> | undefined;
function loadDockerode(): Promise<typeof Docker> {
  dockerode ??= import('dockerode').then(
    (mod) => mod.default,
    (err: unknown) => {
      dockerode = undefined;
      throw err;
    },
  );
  return dockerode;
}

/** A client bound to one socket: DOCKER_HOST and friends in the environment are ignored. */
export async function connectEngine(socketPath: string, timeoutMs: number): Promise<Engine> {
  const Docker = await loadDockerode();
  return new Docker({
    socketPath,
    host: undefined,
    port: undefined,
    protocol: 'http',
    ca: undefined,
    cert: undefined,
    key: undefined,
    // An idle-response guard: a runtime that stops answering fails the call instead of
    // hanging the pipeline. Pulls run on a client without it (a big layer may be silent long).
    ...(timeoutMs > 0 ? { timeout: timeoutMs } : {}),
  });
}

export function statusOf(err: unknown): number | undefined {
  const code = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

export const isNotFound = (err: unknown) => statusOf(err) === 404;
/** 304: already started / already stopped. */
export const isNotModified = (err: unknown) => statusOf(err) === 304;

/** The runtime's own words, without dockerode's `(HTTP code 500) server error - ` prefix noise. */
export function engineMessage(err: unknown): string {
  const e = err as { message?: unknown; json?: { message?: unknown; cause?: unknown } } | null;
  const json = e?.json;
  if (json && typeof json.message === 'string' && json.message) return json.message.trim();
  return typeof e?.message === 'string' ? e.message.trim() : String(err);
}

/** Wraps a runtime failure with what was being done; the runtime's text is kept. */
export function engineError(action: string, err: unknown): Error {
  if (err instanceof MeshError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES') {
    return new Error(`container runtime unreachable while trying to ${action}: ${engineMessage(err)}`, { cause: err });
  }
  return new Error(`container runtime could not ${action}: ${engineMessage(err)}`, { cause: err });
}

export async function inspectContainer(engine: Engine, idOrName: string): Promise<ContainerInspectInfo | undefined> {
  try {
    return await engine.getContainer(idOrName).inspect();
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw engineError(`inspect container ${idOrName}`, err);
  }
}

export async function inspectImage(engine: Engine, ref: string): Promise<ImageInspectInfo | undefined> {
  try {
    return await engine.getImage(ref).inspect();
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw engineError(`inspect image ${ref}`, err);
  }
}

export async function listContainersByLabels(engine: Engine, labels: Record<string, string>): Promise<ContainerInfo[]> {
  try {
    return await engine.listContainers({
      all: true,
      filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
    });
  } catch (err) {
    throw engineError('list containers', err);
  }
}

export async function startContainer(engine: Engine, id: string): Promise<void> {
  try {
    await engine.getContainer(id).start();
  } catch (err) {
    if (!isNotModified(err)) throw engineError(`start container ${id}`, err);
  }
}

/** Stops with the container's own stop timeout (set at create). Already stopped is fine. */
export async function stopContainer(engine: Engine, id: string): Promise<void> {
  try {
    await engine.getContainer(id).stop();
  } catch (err) {
    if (!isNotModified(err)) throw engineError(`stop container ${id}`, err);
  }
}

export async function renameContainer(engine: Engine, id: string, name: string): Promise<void> {
  try {
    await engine.getContainer(id).rename({ name });
  } catch (err) {
    throw engineError(`rename container ${id} to ${name}`, err);
  }
}

/** Removes (killing it if running); a container already gone is fine. */
export async function removeContainer(engine: Engine, id: string): Promise<void> {
  try {
    await engine.getContainer(id).remove({ force: true });
  } catch (err) {
    if (!isNotFound(err)) throw engineError(`remove container ${id}`, err);
  }
}

/** Waits until the runtime answers (it may still be starting after a reboot). */
export async function waitForEngine(engine: Engine, timeoutMs: number, socketPath: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await engine.ping();
      return;
    } catch (err) {
      if (Date.now() >= deadline) {
        throw new Error(`container runtime at ${socketPath} does not answer: ${engineMessage(err)}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Container names come back as "/name" from some calls. */
export function nameOf(info: { Name?: string; Names?: string[] }): string {
  // podman 4.3 lists "Name": "" next to "Names": ["/x"]; an empty Name is no name.
  const raw = info.Name || info.Names?.[0] || '';
  return raw.startsWith('/') ? raw.slice(1) : raw;
}

export interface PullOptions {
  timeoutMs: number;
  signal: AbortSignal;
  /** Bytes when the runtime reports them (docker does), else layers (podman reports none). */
  onProgress: (done: number, total: number) => void;
}

interface PullEvent {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message?: string };
}

const LAYER_DONE = /^(Pull complete|Already exists|Download complete)/i;
const MAX_LINE = 1024 * 1024;

/**
 * Pulls `ref` (a digest reference) and resolves when the runtime says it finished. A failed
 * pull arrives as an `error` event inside a 200 response, not as an HTTP error: its text is
 * surfaced. Bounded by `timeoutMs` and by `signal`.
 */
export async function pullImage(engine: Engine, ref: string, options: PullOptions): Promise<void> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('pull timeout'));
  }, options.timeoutMs);
  const onAbort = () => controller.abort(options.signal.reason);
  options.signal.addEventListener('abort', onAbort, { once: true });
  if (options.signal.aborted) onAbort();
  const fail = (text: string, cause?: unknown) => new MeshError('MESH_ERR_DOWNLOAD_FAILED', `pull of ${ref} failed: ${text}`, cause === undefined ? undefined : { cause });
  try {
    let stream: NodeJS.ReadableStream;
    try {
      stream = await engine.pull(ref, { abortSignal: controller.signal });
    } catch (err) {
      if (controller.signal.aborted) throw err;
      throw fail(engineMessage(err), err);
    }
    await consumePullStream(stream, controller.signal, options.onProgress, fail);
  } catch (err) {
    if (timedOut) throw fail(`no result within ${Math.round(options.timeoutMs / 1000)} s (pull timeout)`, err);
    if (options.signal.aborted) throw fail('interrupted (agent stopping)', err);
    throw err instanceof MeshError ? err : fail(engineMessage(err), err);
  } finally {
    clearTimeout(timer);
    options.signal.removeEventListener('abort', onAbort);
  }
}

function consumePullStream(
  stream: NodeJS.ReadableStream,
  signal: AbortSignal,
  onProgress: (done: number, total: number) => void,
  fail: (text: string, cause?: unknown) => MeshError,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const layers = new Map<string, { current: number; total: number; done: boolean }>();
    let buffer = '';
    let error: string | undefined;
    let settled = false;

    const report = () => {
      let bytesDone = 0;
      let bytesTotal = 0;
      let layersDone = 0;
      for (const layer of layers.values()) {
        bytesTotal += layer.total;
        bytesDone += layer.done ? layer.total : Math.min(layer.current, layer.total);
        if (layer.done) layersDone += 1;
      }
      if (bytesTotal > 0) onProgress(bytesDone, bytesTotal);
      else if (layers.size > 0) onProgress(layersDone, layers.size);
    };

    const handle = (line: string) => {
      const text = line.trim();
      if (!text) return;
      let event: PullEvent;
      try {
        event = JSON.parse(text) as PullEvent;
      } catch {
        return; // not a progress object: ignore, the end result decides
      }
      if (event.error || event.errorDetail?.message) {
        error ??= (event.errorDetail?.message || event.error || 'unknown error').trim();
        return;
      }
      if (!event.id || !event.status || /^(Pulling from|Digest:|Status:)/.test(event.status)) return;
      if (!/^[0-9a-f]{6,}$/.test(event.id)) return;
      const layer = layers.get(event.id) ?? { current: 0, total: 0, done: false };
      if (event.progressDetail?.total && /^Downloading/i.test(event.status)) {
        layer.total = Math.max(layer.total, event.progressDetail.total);
        layer.current = Math.max(layer.current, event.progressDetail.current ?? 0);
      }
      if (LAYER_DONE.test(event.status)) layer.done = true;
      layers.set(event.id, layer);
      report();
    };

    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (err) return reject(err);
      if (buffer) handle(buffer);
      buffer = '';
      if (error) return reject(fail(error));
      report();
      resolve();
    };
    const onAbort = () => {
      (stream as unknown as { destroy?: (e?: Error) => void }).destroy?.();
      finish(new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });

    stream.on('data', (chunk: Buffer | string) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        handle(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
      if (buffer.length > MAX_LINE) finish(fail('the runtime sent an oversized progress line'));
    });
    stream.on('error', (err: Error) => finish(err));
    stream.on('end', () => finish());
    stream.on('close', () => {
      const complete = (stream as unknown as { complete?: boolean }).complete;
      finish(complete === false ? new Error('the runtime closed the pull stream early') : undefined);
    });
  });
}
