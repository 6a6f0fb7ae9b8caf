// No runtime needed: the descriptor schema and the runtime option.
import { describe, expect, it } from 'vitest';
import { compileSchema } from '@meshanics/core/contract';
import { runPipeline, type TransitionEvent } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import HttpProbePlugin from '@meshanics/probe-http';
import ContainerArtifactPlugin, { CONTAINER_SPEC_SCHEMA, resolveRuntimeSocket, runtimeSocketCandidates } from '../src/index.js';
import * as schemaModule from '../src/schema.js';

const validate = compileSchema(CONTAINER_SPEC_SCHEMA, 'spec');
const DIGEST = `sha256:${'ab'.repeat(32)}`;

describe('container descriptor schema', () => {
  it('accepts a fully qualified digest-pinned image with every field', () => {
    const r = validate({
      image: `registry.example.com:5000/team/app@${DIGEST}`,
      name: 'app',
      cmd: ['/bin/app', '--port', '8080'],
      env: { MODE: 'edge', _X1: '' },
      ports: [
        { container: 8080, host: 18080 },
        { container: 53, host: 5353, protocol: 'udp', hostIp: '0.0.0.0' },
      ],
      restartPolicy: 'unless-stopped',
      mounts: [{ source: '/var/lib/app', target: '/data', readOnly: true }],
      stopTimeoutSeconds: 5,
    });
    expect(r).toMatchObject({ ok: true });
    expect(validate({ image: `127.0.0.1:5000/web@${DIGEST}`, name: 'web' }).ok).toBe(true);
    expect(validate({ image: `localhost/web@${DIGEST}`, name: 'web' }).ok).toBe(true);
  });

  it('refuses a tag (or a tag plus a digest) with the digest rule in the message', () => {
    for (const image of ['registry.example.com/app:1.2', 'registry.example.com/app:latest', 'registry.example.com/app']) {
      const r = validate({ image, name: 'app' });
      expect(r.ok).toBe(false);
      expect(!r.ok && r.errors[0]).toBe('spec/image must match pattern "^[^@]+@sha256:[0-9a-f]{64}$"');
    }
    // A tag next to the digest would be ambiguous: refused by the grammar.
    expect(validate({ image: `registry.example.com/app:1.2@${DIGEST}`, name: 'app' }).ok).toBe(false);
    // Short digests, upper-case hex and other algorithms are not a pin.
    expect(validate({ image: 'registry.example.com/app@sha256:abc', name: 'app' }).ok).toBe(false);
    expect(validate({ image: `registry.example.com/app@${DIGEST.toUpperCase()}`, name: 'app' }).ok).toBe(false);
  });

  it('refuses short names that a runtime would resolve through search registries', () => {
    const r = validate({ image: `busybox@${DIGEST}`, name: 'app' });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors.join('; ')).toContain('spec/image must match pattern "^(?:localhost|');
    expect(validate({ image: `library/busybox@${DIGEST}`, name: 'app' }).ok).toBe(false);
  });

  it('refuses bad names, relative or traversing mounts, unknown fields and privileged knobs', () => {
    const base = { image: `registry.example.com/app@${DIGEST}` };
    for (const name of ['App', 'app.backup', '-app', 'app_1', 'a'.repeat(64), '']) {
      expect(validate({ ...base, name }).ok, name).toBe(false);
    }
    expect(validate({ ...base, name: 'app', mounts: [{ source: 'data', target: '/data' }] }).ok).toBe(false);
    expect(validate({ ...base, name: 'app', mounts: [{ source: '/srv/../etc', target: '/data' }] }).ok).toBe(false);
    expect(validate({ ...base, name: 'app', mounts: [{ source: '/srv/app/', target: '/data' }] }).ok).toBe(false);
    const extra = validate({ ...base, name: 'app', privileged: true });
    expect(!extra.ok && extra.errors[0]).toBe('spec must NOT have additional property "privileged"');
    expect(validate({ ...base, name: 'app', ports: [{ container: 80, host: 70000 }] }).ok).toBe(false);
    expect(validate({ ...base, name: 'app', ports: [{ container: 80, host: 80, hostIp: 'example.com' }] }).ok).toBe(false);
    expect(validate({ ...base, name: 'app', restartPolicy: 'sometimes' }).ok).toBe(false);
    expect(validate({ ...base, name: 'app', env: { 'A-B': 'x' } }).ok).toBe(false);
    expect(validate({ ...base, name: 'app', cmd: 'sh -c reboot' }).ok).toBe(false);
  });

  it('the schema module is side-effect free: no runtime client in it', async () => {
    expect(Object.keys(schemaModule).sort()).toEqual([
      'ARTIFACT_KIND',
      'CONTAINER_SPEC_SCHEMA',
      'DEFAULT_HOST_IP',
      'DEFAULT_STOP_TIMEOUT_SECONDS',
      'DIGEST_PINNED_PATTERN',
      'IMAGE_REFERENCE_PATTERN',
      'parseImageReference',
    ]);
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../src/schema.ts', import.meta.url), 'utf8');
    expect(text).not.toMatch(/from 'dockerode'|from '@meshanics\/core'/);
  });
});

describe('runtime option', () => {
  const env = { XDG_RUNTIME_DIR: '/run/user/1000' };
  it('auto prefers podman (user, then rootful) and falls back to docker', () => {
    expect(runtimeSocketCandidates('auto', env)).toEqual(['/run/user/1000/podman/podman.sock', '/run/podman/podman.sock', '/var/run/docker.sock']);
    const only = (p: string) => (c: string) => c === p;
    expect(resolveRuntimeSocket('auto', { env, exists: only('/run/podman/podman.sock') })).toBe('/run/podman/podman.sock');
    expect(resolveRuntimeSocket('auto', { env, exists: only('/var/run/docker.sock') })).toBe('/var/run/docker.sock');
    expect(resolveRuntimeSocket('auto', { env, exists: () => true })).toBe('/run/user/1000/podman/podman.sock');
    expect(resolveRuntimeSocket('auto', { env, exists: () => false })).toBeUndefined();
    expect(resolveRuntimeSocket('podman', { env: {}, exists: only('/var/run/docker.sock') })).toBeUndefined();
    expect(resolveRuntimeSocket('docker', { env, exists: () => true })).toBe('/var/run/docker.sock');
  });

  it('an explicit socket path is used as given; anything else is refused at load', () => {
    expect(resolveRuntimeSocket('/srv/run/engine.sock', { exists: () => false })).toBe('/srv/run/engine.sock');
    expect(resolveRuntimeSocket('unix:///srv/run/engine.sock')).toBe('/srv/run/engine.sock');
    expect(() => new ContainerArtifactPlugin({ runtime: 'tcp://10.0.0.1:2375' })).toThrow(/MESH_ERR_CONFIG_INVALID|must be auto, podman, docker/);
    expect(() => new ContainerArtifactPlugin({ runtime: 'relative.sock' })).toThrow(/must be auto, podman, docker or the absolute path/);
    expect(() => new ContainerArtifactPlugin({ runtime: 'none' })).toThrow(/must be auto, podman, docker/);
    expect(new ContainerArtifactPlugin().runtime).toBe('auto');
  });

  it('with no runtime reachable, an assignment fails naming the sockets it looked for', () => {
    const plugin = new ContainerArtifactPlugin({ runtime: 'podman' });
    const saved = process.env.XDG_RUNTIME_DIR;
    process.env.XDG_RUNTIME_DIR = '/nonexistent-meshanics';
    try {
      expect(() => plugin.socketPath()).toThrow(
        'no container runtime socket found for runtime "podman" (looked for /nonexistent-meshanics/podman/podman.sock, /run/podman/podman.sock)',
      );
    } finally {
      if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = saved;
    }
  });
});

describe('without a reachable runtime', () => {
  it('an assignment ends FAILED naming the socket, with nothing changed', async () => {
    const socket = '/nonexistent-meshanics/engine.sock';
    const t = await createTestAgent([new ContainerArtifactPlugin({ runtime: socket }), new HttpProbePlugin()]);
    const events: TransitionEvent[] = [];
    t.agent.hooks.transition.tap('test', (e) => {
      events.push(e);
    });
    const spec = { image: `127.0.0.1:5000/app@${DIGEST}`, name: 'app' };
    const target = await t.source.publish('app/1/container.json', JSON.stringify(spec));
    const a = testAssignment(target, {
      kind: 'container',
      name: 'app',
      specJson: JSON.stringify(spec),
      probe: { type: 'http', specJson: '{"url":"http://127.0.0.1:1/"}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(t.agent, a, new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toMatch(
      /^MESH_ERR_PLUGIN_FAILED: download hook for kind "container" failed: container runtime at \/nonexistent-meshanics\/engine\.sock does not answer: .*ENOENT/,
    );
    expect(t.agent.state.current.installed.app).toBeUndefined();
  });
});
