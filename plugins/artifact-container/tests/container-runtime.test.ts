// Against a real runtime: podman's Docker-compatible API service and a local registry on
// 127.0.0.1, started by scripts/container-runtime/up.sh, with images built from busybox-static
// (v1, v2: healthy httpd; bad: no /health; other: an image the agent never pulled itself).
// This file has an image store of its own (helpers/private-store.ts): the images it removes
// and the ones it expects present are nobody else's business.
// Over 400 lines: every scenario goes through the one harness in the describe below (agent,
// TUF-published descriptor, store); splitting the file means moving that harness to helpers/
// first (not done yet).
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { recoverInterrupted, runPipeline, type Assignment, type TransitionEvent } from '@meshanics/core';
import { createTestAgent, testAssignment, type TestAgent } from '@meshanics/core/testing';
import HttpProbePlugin from '@meshanics/probe-http';
import ContainerArtifactPlugin, { BACKUP_SUFFIX, LABELS, STAGING_SUFFIX, type ContainerSpec } from '../src/index.js';
import { startPrivateStore, type PrivateStore } from './helpers/private-store.js';
import { IN_CI, findRuntime, type RuntimeEnv, type TestImage } from './helpers/runtime-env.js';

const CHILD = fileURLToPath(new URL('./fixtures/run-container-child.mjs', import.meta.url));
const found = await findRuntime();

if (!found.env) {
  if (IN_CI) {
    describe('container runtime (required in CI)', () => {
      it('is available', () => {
        throw new Error(`CI=true but the container runtime is missing: ${found.missing}`);
      });
    });
  } else {
    console.warn(`[artifact-container] real-runtime tests skipped: ${found.missing}`);
  }
}

describe.skipIf(!found.env)('container artifact against a real runtime (podman API + local registry)', () => {
  const rt = found.env as RuntimeEnv;
  let store: PrivateStore;
  let docker: Docker;
  const prefix = `mt${process.pid}`;
  let counter = 0;
  let root: string;
  /** Containers this file created outside the plugin (foreign ones). */
  const foreign: string[] = [];

  async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
      server.on('error', reject);
    });
  }

  async function imagePresent(image: TestImage): Promise<boolean> {
    return docker
      .getImage(image.ref)
      .inspect()
      .then(
        () => true,
        () => false,
      );
  }

  async function ourContainers(artifact: string) {
    const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.artifact}=${artifact}`] } });
    return list.map((c) => ({ id: c.Id, name: c.Names[0]!.replace(/^\//, ''), state: c.State, labels: c.Labels }));
  }

  async function httpGet(port: number, urlPath = '/'): Promise<{ status: number; body: string }> {
    for (let i = 0; ; i++) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(2000) });
        return { status: res.status, body: await res.text() };
      } catch (err) {
        if (i >= 20) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async function pullAsSomeoneElse(image: TestImage): Promise<void> {
    const stream = await docker.pull(image.ref);
    await new Promise((resolve, reject) => docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve(undefined))));
  }

  interface Setup extends TestAgent {
    artifact: string;
    port: number;
    events: TransitionEvent[];
  }

  async function setup(options: { dataDir?: string; targetsDir?: string; artifact?: string; port?: number; pullTimeoutMs?: number } = {}): Promise<Setup> {
    counter += 1;
    const artifact = options.artifact ?? `${prefix}-${counter}`;
    const test = await createTestAgent([new ContainerArtifactPlugin({ runtime: store.socketPath, pullTimeoutMs: options.pullTimeoutMs ?? 30_000 }), new HttpProbePlugin()], {
      dataDir: options.dataDir ?? path.join(root, `agent-${counter}`),
      targetsDir: options.targetsDir ?? path.join(root, `targets-${counter}`),
      allowlist: { bindMountPaths: [path.join(root, 'mounts')] },
    });
    const events: TransitionEvent[] = [];
    test.agent.hooks.transition.tap('test', (e) => {
      events.push(e);
    });
    return { ...test, artifact, port: options.port ?? (await freePort()), events };
  }

  function descriptor(t: Setup, image: string, extra: Partial<ContainerSpec> = {}): ContainerSpec {
    return {
      image,
      name: t.artifact,
      env: { GREETING: 'hello' },
      ports: [{ container: 8080, host: t.port }],
      restartPolicy: 'no',
      stopTimeoutSeconds: 2,
      ...extra,
    };
  }

  /** Publishes the descriptor as the TUF target and builds the matching assignment. */
  async function assignmentFor(t: Setup, spec: ContainerSpec, version: string, probeAttempts = 3): Promise<Assignment> {
    const bytes = JSON.stringify(spec);
    const target = await t.source.publish(`${t.artifact}/${version}/container.json`, bytes, { kind: 'container', spec });
    return testAssignment(target, {
      kind: 'container',
      name: t.artifact,
      version,
      specJson: bytes,
      probe: {
        type: 'http',
        specJson: JSON.stringify({ url: `http://127.0.0.1:${t.port}/health` }),
        timeoutSeconds: 2,
        attempts: probeAttempts,
        initialDelaySeconds: 0,
      },
    });
  }

  async function deploy(t: Setup, spec: ContainerSpec, version: string, probeAttempts = 3) {
    const assignment = await assignmentFor(t, spec, version, probeAttempts);
    const from = t.events.length;
    const state = await runPipeline(t.agent, assignment, new AbortController().signal);
    const events = t.events.slice(from);
    return { state, reason: events.at(-1)?.reason ?? '', events, assignment };
  }

  async function live(t: Setup) {
    const info = await docker.getContainer(t.artifact).inspect();
    return { id: info.Id, running: info.State.Running, digest: info.Config.Labels[LABELS.digest], version: info.Config.Labels[LABELS.version] };
  }

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-container-'));
    await mkdir(path.join(root, 'mounts', 'www-extra'), { recursive: true });
    await writeFile(path.join(root, 'mounts', 'www-extra', 'note.txt'), 'mounted from the host\n');
    // A fresh, empty store: every run pulls from the registry for real.
    store = await startPrivateStore('container-runtime', rt);
    docker = new Docker({ socketPath: store.socketPath });
  });

  afterEach(async () => {
    const ours = await docker.listContainers({ all: true, filters: { label: [`${LABELS.managed}=true`] } });
    for (const c of ours) {
      if (c.Labels[LABELS.artifact]?.startsWith(prefix))
        await docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined);
    }
    for (const name of foreign.splice(0))
      await docker
        .getContainer(name)
        .remove({ force: true })
        .catch(() => undefined);
  });

  afterAll(async () => {
    if (!rt) return;
    await store?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('a first install pulls by digest with progress, starts the container and ends HEALTHY on an http probe', async () => {
    const t = await setup();
    const spec = descriptor(t, rt.images.v1.ref, {
      mounts: [{ source: path.join(root, 'mounts', 'www-extra'), target: '/www/extra', readOnly: true }],
    });
    const r = await deploy(t, spec, '1.0.0');
    expect(r.state, r.reason).toBe('HEALTHY');
    expect(r.reason).toMatch(/healthy: GET http:\/\/127\.0\.0\.1:\d+\/health: HTTP 200/);
    // Progress was reported while DOWNLOADING (podman reports layers, docker bytes).
    const progress = r.events.filter((e) => e.state === 'DOWNLOADING' && e.bytesTotal > 0);
    expect(progress.length).toBeGreaterThan(0);
    expect(r.events.map((e) => e.state)).toEqual(expect.arrayContaining(['DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY']));

    const info = await docker.getContainer(t.artifact).inspect();
    expect(info.State.Running).toBe(true);
    expect(info.Config.Labels).toMatchObject({
      [LABELS.managed]: 'true',
      [LABELS.artifact]: t.artifact,
      [LABELS.version]: '1.0.0',
      [LABELS.digest]: rt.images.v1.digest,
      [LABELS.assignment]: r.assignment.assignmentId,
    });
    expect(info.Config.Env).toContain('GREETING=hello');
    const image = await docker.getImage(info.Image).inspect();
    expect(image.RepoDigests).toContain(rt.images.v1.ref);
    expect(await httpGet(t.port)).toEqual({ status: 200, body: 'meshanics-test v1\n' });
    expect(await httpGet(t.port, '/extra/note.txt')).toEqual({ status: 200, body: 'mounted from the host\n' });
    // Only the live container: no staging or backup left behind.
    expect((await ourContainers(t.artifact)).map((c) => c.name)).toEqual([t.artifact]);
    expect(t.agent.state.current.installed[t.artifact]?.pluginState).toMatchObject({
      image: { ref: rt.images.v1.ref, digest: rt.images.v1.digest, managed: true },
    });
  });

  it('an upgrade whose probe fails ends ROLLED_BACK with the previous container running the old digest', async () => {
    const t = await setup();
    const first = await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0');
    expect(first.state, first.reason).toBe('HEALTHY');
    const before = await live(t);

    const r = await deploy(t, descriptor(t, rt.images.bad.ref), '2.0.0-bad', 2);
    expect(r.state, r.reason).toBe('ROLLED_BACK');
    expect(r.reason).toContain('MESH_ERR_PROBE_FAILED');
    expect(r.reason).toContain('HTTP 404');
    expect(r.reason).toContain('previous version restored');

    const after = await live(t);
    expect(after).toEqual({ ...before, running: true });
    expect(after.digest).toBe(rt.images.v1.digest);
    expect(await httpGet(t.port)).toEqual({ status: 200, body: 'meshanics-test v1\n' });
    const left = await ourContainers(t.artifact);
    expect(left.map((c) => c.name)).toEqual([t.artifact]);
    expect(left.some((c) => c.name.endsWith(STAGING_SUFFIX) || c.name.endsWith(BACKUP_SUFFIX))).toBe(false);
    // The failed version's image was pulled by the agent and is neither current nor previous.
    expect(await imagePresent(rt.images.bad)).toBe(false);
    expect(await imagePresent(rt.images.v1)).toBe(true);
  });

  it('a healthy upgrade replaces the container, removes the backup and keeps the previous image', async () => {
    const t = await setup();
    expect((await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0')).state).toBe('HEALTHY');
    const old = await live(t);
    const r = await deploy(t, descriptor(t, rt.images.v2.ref), '2.0.0');
    expect(r.state, r.reason).toBe('HEALTHY');
    const now = await live(t);
    expect(now).toMatchObject({ running: true, digest: rt.images.v2.digest, version: '2.0.0' });
    expect(now.id).not.toBe(old.id);
    expect(await httpGet(t.port)).toEqual({ status: 200, body: 'meshanics-test v2\n' });
    expect((await ourContainers(t.artifact)).map((c) => c.name)).toEqual([t.artifact]);
    expect(await imagePresent(rt.images.v1)).toBe(true);
    expect(await imagePresent(rt.images.v2)).toBe(true);
    const record = t.agent.state.current.installed[t.artifact];
    expect(record?.version).toBe('2.0.0');
    expect(record?.previous?.version).toBe('1.0.0');
  });

  it("a pull of an unknown digest ends FAILED with the registry's reason, the running container untouched", async () => {
    const t = await setup();
    expect((await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0')).state).toBe('HEALTHY');
    const before = await live(t);
    const unknown = `${rt.images.v1.repository}@sha256:${'0'.repeat(64)}`;
    const r = await deploy(t, descriptor(t, unknown), '9.9.9');
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('MESH_ERR_DOWNLOAD_FAILED');
    expect(r.reason).toContain(`pull of ${unknown} failed`);
    expect(r.reason).toContain('manifest unknown');
    expect(r.events.map((e) => e.state)).not.toContain('APPLYING');
    expect(await live(t)).toEqual(before);
    expect((await ourContainers(t.artifact)).map((c) => c.name)).toEqual([t.artifact]);
  });

  it('a registry that refuses connections holds the update back (DOWNLOADING, never FAILED), the running container untouched', async () => {
    // A port nothing listens on: the engine's pull fails with "connect: connection refused".
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const t = await setup();
    expect((await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0')).state).toBe('HEALTHY');
    const before = await live(t);
    const image = `127.0.0.1:${port}/refused/app@sha256:${'2'.repeat(64)}`;
    const r = await deploy(t, descriptor(t, image), '2.0.0');
    expect(r.state, r.reason).toBe('DOWNLOADING');
    expect(r.reason).toContain(`MESH_ERR_PLUGIN_FAILED: download hook for kind "container" failed: MESH_ERR_DOWNLOAD_FAILED: pull of ${image} failed`);
    expect(r.reason).toContain('connection refused');
    expect(r.reason).toMatch(/3 attempts failed on the network, resuming at the next heartbeat$/);
    expect(r.events.map((e) => e.state)).not.toContain('FAILED');
    expect(t.agent.state.current.inflight[t.artifact]?.heldByNetwork).toBe(true);
    expect(await live(t)).toEqual(before);
    expect((await ourContainers(t.artifact)).map((c) => c.name)).toEqual([t.artifact]);
  });

  it('a pull that gets no answer is bounded by the pull timeout and ends FAILED', async () => {
    // A "registry" that accepts connections and never says a word.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const t = await setup({ pullTimeoutMs: 2_000 });
      const image = `127.0.0.1:${port}/silent/app@sha256:${'1'.repeat(64)}`;
      const started = Date.now();
      const r = await deploy(t, descriptor(t, image), '1.0.0');
      expect(r.state).toBe('FAILED');
      expect(r.reason).toContain(`MESH_ERR_DOWNLOAD_FAILED: pull of ${image} failed: no result within 2 s (pull timeout)`);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(await ourContainers(t.artifact)).toEqual([]);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  it('a tag instead of a digest is a schema error and nothing is fetched or pulled', async () => {
    const t = await setup();
    const spec = descriptor(t, rt.images.v1.tagRef);
    const r = await deploy(t, spec, '1.0.0');
    expect(r.state).toBe('FAILED');
    expect(r.reason).toBe('MESH_ERR_SPEC_INVALID: spec/image must match pattern "^[^@]+@sha256:[0-9a-f]{64}$"');
    expect(t.source.resolved).toEqual([]);
    expect(
      await docker
        .getImage(rt.images.v1.tagRef)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    ).toBe(false);
    expect(await ourContainers(t.artifact)).toEqual([]);
  });

  it('an assignment whose spec differs from the signed descriptor target fails before anything is pulled', async () => {
    const t = await setup();
    const signed = descriptor(t, rt.images.v1.ref);
    const bytes = JSON.stringify(signed);
    // The target carries the descriptor but no signed custom spec, so only the plugin's check stands.
    const target = await t.source.publish(`${t.artifact}/1/container.json`, bytes);
    const tampered = { ...signed, ports: [{ container: 8080, host: t.port, hostIp: '0.0.0.0' }] };
    const a = testAssignment(target, {
      kind: 'container',
      name: t.artifact,
      version: '1',
      specJson: JSON.stringify(tampered),
      probe: { type: 'http', specJson: JSON.stringify({ url: `http://127.0.0.1:${t.port}/health` }), timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    const state = await runPipeline(t.agent, a, new AbortController().signal);
    expect(state).toBe('FAILED');
    expect(t.events.at(-1)?.reason).toContain('the assignment spec differs from the container descriptor signed as the TUF target');
    expect(await ourContainers(t.artifact)).toEqual([]);
  });

  it('refuses a bind mount outside allowlist.bindMountPaths before pulling', async () => {
    const t = await setup();
    const r = await deploy(t, descriptor(t, rt.images.v2.ref, { mounts: [{ source: '/etc', target: '/host-etc', readOnly: true }] }), '1');
    expect(r.state).toBe('FAILED');
    expect(r.reason).toContain('bind mount "/etc" is not under an allowlisted path (allowlist.bindMountPaths)');
    expect(await ourContainers(t.artifact)).toEqual([]);
    expect(t.source.resolved).toEqual([]);
  });

  it('an upgrade whose http probe host is not allowlisted ends FAILED before the pull; the running container is not stopped', async () => {
    const t = await setup();
    const first = await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0');
    expect(first.state, first.reason).toBe('HEALTHY');
    const before = await live(t);
    const startedAt = (await docker.getContainer(t.artifact).inspect()).State.StartedAt;
    const resolvedBefore = t.source.resolved.length;
    const assignment = await assignmentFor(t, descriptor(t, rt.images.v2.ref), '2.0.0');
    const forbidden = { ...assignment, probe: { ...assignment.probe, specJson: JSON.stringify({ url: `http://192.0.2.10:${t.port}/health` }) } };
    const from = t.events.length;
    expect(await runPipeline(t.agent, forbidden, new AbortController().signal)).toBe('FAILED');
    const events = t.events.slice(from);
    expect(events.map((e) => e.state)).toEqual(['FAILED']);
    expect(events[0]!.reason).toBe('MESH_ERR_ALLOWLIST_DENIED: host "192.0.2.10" is not on the allowlist (allowlist.httpHosts)');
    // The descriptor was never resolved, so the download hook (the pull) never ran.
    expect(t.source.resolved.length).toBe(resolvedBefore);
    // The very same container, never stopped (State.StartedAt unchanged), still serving v1.
    const info = await docker.getContainer(t.artifact).inspect();
    expect({ id: info.Id, running: info.State.Running }).toEqual({ id: before.id, running: true });
    expect(info.State.StartedAt).toBe(startedAt);
    expect((await ourContainers(t.artifact)).map((c) => c.name)).toEqual([t.artifact]);
  });

  const CRASH_POINTS = {
    'after-stop': 'right after stopping the old container',
    'before-start': 'after the renames, before starting the new one',
    'after-start': 'after starting the new one, before it was probed healthy',
  } as const;
  for (const crashAt of Object.keys(CRASH_POINTS) as (keyof typeof CRASH_POINTS)[]) {
    it(`the agent killed (SIGKILL) ${CRASH_POINTS[crashAt]} restores a running known-good container on restart`, async () => {
      const t = await setup();
      const first = await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0');
      expect(first.state, first.reason).toBe('HEALTHY');
      const good = await live(t);
      const upgrade = await assignmentFor(t, descriptor(t, rt.images.v2.ref), '2.0.0');

      const child = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
        const p = execFile(
          process.execPath,
          [CHILD, t.dataDir, t.source.dir, JSON.stringify(upgrade), store.socketPath, crashAt, good.id],
          { timeout: 60_000 },
          (_err, stdout, stderr) => resolve({ code: p.exitCode, signal: p.signalCode, stdout, stderr }),
        );
      });
      expect(child.signal, child.stderr).toBe('SIGKILL');
      expect(child.stdout).toBe('');
      // Killed inside the window: the old container is stopped, the new one not yet healthy.
      expect((await docker.getContainer(good.id).inspect()).State.Running).toBe(false);
      const during = await ourContainers(t.artifact);
      const fresh = during.filter((c) => c.labels[LABELS.assignment] === upgrade.assignmentId);
      expect(fresh).toHaveLength(1);
      expect(fresh[0]!.state === 'running').toBe(crashAt === 'after-start');
      expect(fresh[0]!.name).toBe(crashAt === 'after-stop' ? `${t.artifact}${STAGING_SUFFIX}` : t.artifact);

      // The agent starts again on the same data dir: recovery rolls back from the journal.
      const restarted = await setup({ dataDir: t.dataDir, targetsDir: t.source.dir, artifact: t.artifact, port: t.port });
      // The kill always lands inside the apply hook (the probe phase starts after it returns).
      expect(restarted.agent.state.current.inflight[t.artifact]?.phase).toBe('applying');
      await recoverInterrupted(restarted.agent);
      const last = restarted.events.at(-1);
      expect(last?.state).toBe('ROLLED_BACK');
      expect(last?.reason).toBe('agent restarted during applying; previous version restored');

      expect(await live(t)).toEqual({ ...good, running: true });
      expect(await httpGet(t.port)).toEqual({ status: 200, body: 'meshanics-test v1\n' });
      const after = await ourContainers(t.artifact);
      expect(after.map((c) => c.name)).toEqual([t.artifact]);
      expect(after.some((c) => c.labels[LABELS.assignment] === upgrade.assignmentId)).toBe(false);
      expect(restarted.agent.state.current.inflight[t.artifact]).toBeUndefined();
      expect(restarted.agent.state.current.installed[t.artifact]?.version).toBe('1.0.0');
    });
  }

  it('containers and images without our labels are never touched', async () => {
    const t = await setup();
    // Someone else's images, pulled before the agent ever needed them, and containers of theirs.
    await docker
      .getImage(rt.images.v2.ref)
      .remove({ force: true })
      .catch(() => undefined);
    await docker
      .getImage(rt.images.other.ref)
      .remove({ force: true })
      .catch(() => undefined);
    await pullAsSomeoneElse(rt.images.other);
    await pullAsSomeoneElse(rt.images.bad);
    const bystander = `${prefix}-bystander-${counter}`;
    foreign.push(bystander);
    const theirs = await docker.createContainer({ name: bystander, Image: rt.images.bad.ref, Labels: { owner: 'someone-else' } });
    await theirs.start();

    // 1. The managed name is taken by a container that is not ours: refused, nothing changed.
    const squatter = `${prefix}-squatter-${counter}`;
    foreign.push(squatter);
    const squatting = await docker.createContainer({ name: squatter, Image: rt.images.bad.ref });
    await squatting.start();
    const s = await setup({ artifact: squatter });
    const refused = await deploy(s, descriptor(s, rt.images.v1.ref), '1.0.0');
    expect(refused.state).toBe('FAILED');
    expect(refused.reason).toContain(`a container named "${squatter}" exists and is not managed by Meshanics`);
    expect(refused.reason).toContain('nothing changed');
    const squatterInfo = await squatting.inspect();
    expect(squatterInfo.State.Running).toBe(true);
    expect(squatterInfo.Name).toBe(`/${squatter}`);
    expect(squatterInfo.Config.Labels ?? {}).not.toHaveProperty(LABELS.managed);

    // 2. Versions come and go. Two versions back, an image the agent pulled goes; one it found
    //    already there (someone else's) stays, even with no container using it.
    expect((await deploy(t, descriptor(t, rt.images.v2.ref), '1.0.0')).state).toBe('HEALTHY'); // pulled by us
    expect((await deploy(t, descriptor(t, rt.images.other.ref), '2.0.0')).state).toBe('HEALTHY'); // theirs
    expect((await deploy(t, descriptor(t, rt.images.v1.ref), '3.0.0')).state).toBe('HEALTHY');
    expect(await imagePresent(rt.images.v2)).toBe(false);
    expect((await deploy(t, descriptor(t, rt.images.v2.ref), '4.0.0')).state).toBe('HEALTHY');
    expect(await imagePresent(rt.images.other)).toBe(true);
    expect(await imagePresent(rt.images.v1)).toBe(true);
    const bystanderInfo = await theirs.inspect();
    expect(bystanderInfo.State.Running).toBe(true);
    expect(bystanderInfo.Name).toBe(`/${bystander}`);
    expect((await ourContainers(t.artifact)).map((c) => c.name)).toEqual([t.artifact]);
  });

  // Something else sharing the image store (another agent, an operator's prune) can remove the
  // image after the download stage found or pulled it: the crash lanes of
  // tests/faults/crash-injection.test.ts, two devices on one store, ended FAILED with "no such
  // image ... image not known" at create that way. The agent pulls it again, once, by digest.
  /** Removes the assignment's image from the store before the plugin's own hook runs. */
  function vanishBefore(t: Setup, stage: 'verify' | 'apply', version: string): { count: number } {
    const removed = { count: 0 };
    t.agent.hooks[stage].for('container').tapPromise({ name: `test-vanish-${stage}`, stage: -1 }, async (ctx) => {
      if (ctx.assignment.version !== version) return;
      await docker.getImage((ctx.spec as ContainerSpec).image).remove({ force: true });
      removed.count += 1;
    });
    return removed;
  }

  it('an image removed between the download and the container create is pulled again by digest and the update ends HEALTHY', async () => {
    const t = await setup();
    expect((await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0')).state).toBe('HEALTHY');
    const removed = vanishBefore(t, 'apply', '2.0.0');
    const r = await deploy(t, descriptor(t, rt.images.v2.ref), '2.0.0');
    expect(removed.count).toBe(1);
    expect(r.state, r.reason).toBe('HEALTHY');
    expect(await live(t)).toMatchObject({ running: true, digest: rt.images.v2.digest, version: '2.0.0' });
    expect(await httpGet(t.port)).toEqual({ status: 200, body: 'meshanics-test v2\n' });
    expect(await imagePresent(rt.images.v2)).toBe(true);
    // Pulled by the agent this time: its own to remove once no version needs it.
    expect(t.agent.state.current.installed[t.artifact]?.pluginState).toMatchObject({
      repulled: true,
      image: { ref: rt.images.v2.ref, digest: rt.images.v2.digest, managed: true },
    });
  });

  it('an image that vanishes again after it was pulled a second time ends FAILED with the reason, the live container untouched', async () => {
    const t = await setup();
    expect((await deploy(t, descriptor(t, rt.images.v1.ref), '1.0.0')).state).toBe('HEALTHY');
    const before = await live(t);
    // Gone before verify (pulled again there), and gone again before create.
    const atVerify = vanishBefore(t, 'verify', '2.0.0');
    const atApply = vanishBefore(t, 'apply', '2.0.0');
    const r = await deploy(t, descriptor(t, rt.images.v2.ref), '2.0.0');
    expect([atVerify.count, atApply.count]).toEqual([1, 1]);
    expect(r.state).toBe('FAILED');
    expect(r.reason).toBe(
      `MESH_ERR_PLUGIN_FAILED: apply hook for kind "container" failed: MESH_ERR_DOWNLOAD_FAILED: image ${rt.images.v2.ref} vanished from the runtime's local store between the download stage and the container create, a second time after it was pulled again: something on the device keeps removing it; update given up; nothing changed`,
    );
    expect(await live(t)).toEqual(before);
    expect(await httpGet(t.port)).toEqual({ status: 200, body: 'meshanics-test v1\n' });
    expect((await ourContainers(t.artifact)).map((c) => c.name)).toEqual([t.artifact]);
  });

  it('two agents on one image store: the image one removes after its rollback is pulled again by the other, which ends HEALTHY', async () => {
    // The crash lanes' race, as it was: device A pulls the image and fails its probe, so its
    // cleanup removes the image it pulled; device B (another agent: A's claims are not B's)
    // found the image present, skipped the pull and is held before its verify meanwhile.
    const devA = await setup();
    const devB = await setup();
    await docker
      .getImage(rt.images.v2.ref)
      .remove({ force: true })
      .catch(() => undefined);
    let reached!: () => void;
    const bReached = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const bReleased = new Promise<void>((resolve) => (release = resolve));
    devB.agent.hooks.verify.for('container').tapPromise({ name: 'test-gate', stage: -1 }, async () => {
      reached();
      await bReleased;
    });
    const aAssignment = await assignmentFor(devA, descriptor(devA, rt.images.v2.ref), '1.0.0', 1);
    const failing: Assignment = { ...aAssignment, probe: { ...aAssignment.probe, specJson: JSON.stringify({ url: `http://127.0.0.1:${devA.port}/missing` }) } };
    const bAssignment = await assignmentFor(devB, descriptor(devB, rt.images.v2.ref), '1.0.0');
    try {
      const aVerifying = new Promise<void>((resolve) => {
        devA.agent.hooks.transition.tap('test-a', (e) => {
          if (e.state === 'VERIFYING') resolve();
        });
      });
      const aRun = runPipeline(devA.agent, failing, new AbortController().signal);
      await aVerifying;
      const bRun = runPipeline(devB.agent, bAssignment, new AbortController().signal);
      await bReached;
      expect(await aRun).toBe('ROLLED_BACK');
      expect(await imagePresent(rt.images.v2)).toBe(false); // A's cleanup removed the image it pulled
      release();
      expect(await bRun, devB.events.at(-1)?.reason).toBe('HEALTHY');
      expect(devB.agent.state.current.installed[devB.artifact]?.pluginState).toMatchObject({ repulled: true, image: { managed: true } });
      expect(await httpGet(devB.port)).toEqual({ status: 200, body: 'meshanics-test v2\n' });
    } finally {
      release();
    }
  });

  it('an image one artifact pulled is kept while another artifact is between its pull and its create', async () => {
    // The agent runs several pipelines at once against one image store. Artifact A pulls the
    // image and fails its probe (its cleanup would remove the image it pulled); artifact B
    // found the image present and is held between its download and its apply meanwhile.
    const t = await setup();
    const a = t.artifact;
    const b = `${a}-b`;
    await docker
      .getImage(rt.images.other.ref)
      .remove({ force: true })
      .catch(() => undefined);
    let reached!: () => void;
    const bReached = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const bReleased = new Promise<void>((resolve) => (release = resolve));
    // Tapped after the plugin: runs once B's image is present, before B's apply creates anything.
    t.agent.hooks.download.for('container').tapPromise('test-gate', async (ctx) => {
      if (ctx.assignment.name !== b) return;
      reached();
      await bReleased;
    });
    const aDeploy = await assignmentFor(t, descriptor(t, rt.images.other.ref), '1.0.0', 1);
    const failing: Assignment = { ...aDeploy, probe: { ...aDeploy.probe, specJson: JSON.stringify({ url: `http://127.0.0.1:${t.port}/missing` }) } };
    const bPort = await freePort();
    const bSpec = descriptor(t, rt.images.other.ref, { name: b, ports: [{ container: 8080, host: bPort }] });
    const bBytes = JSON.stringify(bSpec);
    const bTarget = await t.source.publish(`${b}/1.0.0/container.json`, bBytes, { kind: 'container', spec: bSpec });
    const bAssignment = testAssignment(bTarget, {
      kind: 'container',
      name: b,
      version: '1.0.0',
      specJson: bBytes,
      probe: { type: 'http', specJson: JSON.stringify({ url: `http://127.0.0.1:${bPort}/health` }), timeoutSeconds: 2, attempts: 3, initialDelaySeconds: 0 },
    });
    try {
      // A pulls first (so the image is A's to remove), then B starts and waits at the gate.
      const aDownloaded = new Promise<void>((resolve) => {
        t.agent.hooks.transition.tap('test-a', (e) => {
          if (e.assignment.assignmentId === failing.assignmentId && e.state === 'VERIFYING') resolve();
        });
      });
      const aRun = runPipeline(t.agent, failing, new AbortController().signal);
      await aDownloaded;
      const bRun = runPipeline(t.agent, bAssignment, new AbortController().signal);
      await bReached;
      expect(await aRun).toBe('ROLLED_BACK');
      release();
      expect(await bRun).toBe('HEALTHY');
      expect(await imagePresent(rt.images.other)).toBe(true);
      expect(await httpGet(bPort)).toEqual({ status: 200, body: 'not managed by meshanics\n' });
    } finally {
      release();
      await docker
        .getContainer(b)
        .remove({ force: true })
        .catch(() => undefined);
    }
  });
});
