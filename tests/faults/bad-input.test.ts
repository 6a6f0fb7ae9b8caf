// Bad input at both ends of the device API, with real processes.
//   Server side (`meshanics-server serve`): seeded random and truncated protobuf at every
//   method, oversized fields and messages, UploadLogs streams far past their cap, many at a
//   time. The server answers each with an error, stays up, serves a well-formed call right
//   after, and its memory (VmRSS from /proc) stays bounded.
//   Agent side (`meshanics-agent run`): a heartbeat reply with 10,000 assignments from a tiny
//   fake DeviceService over the same mTLS. The agent must stay up with bounded memory and
//   keep working; what it does is recorded for docs/reliability.md.
import * as crypto from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listLogRequests, requestDeviceLogs, type MeshanicsContext } from '@meshanics/server';
import { agentRunArgs, serverCli, spawnAgent, type Child } from '../../scripts/lib/processes.mjs';
import { floodAssignments, startFakeDeviceService } from './fixtures/fake-device-service.mjs';
import { CAPABILITIES, FLEET, rawDevice, startFaultServer, type FaultServer, type RawTls } from './fixtures/fault-server.js';
import { LONG, baseSeed, prng, recordResults, rssKiB, waitFor } from './fixtures/fault-lib.mjs';
import { METHODS, decode, encode, grpc, rawClient, rawUnary, rawUpload } from './fixtures/raw-grpc.mjs';

const SEED = baseSeed();
const RANDOM_PER_METHOD = LONG ? 2000 : 150;

let fixture: FaultServer | undefined;
let root: string;
let serverDir: string;
let server: Child;
let ctx: MeshanicsContext;
let tls: RawTls;
const results: Record<string, unknown> = {};

const VALID: Record<string, Buffer> = {};

function rss(): number {
  return rssKiB(server.proc.pid!);
}

async function healthy(): Promise<void> {
  expect(server.proc.exitCode, 'the server exited').toBeNull();
  const client = rawClient(server.grpc, tls);
  try {
    const res = await rawUnary(client, 'Heartbeat', encode('Heartbeat', { installed: [] }));
    expect(res.code, res.details).toBe(0);
    expect(decode('Heartbeat', res.response).offboarded).toBe(false);
  } finally {
    client.close();
  }
}

function histogram(codes: Array<{ code: grpc.status; details: string }>): Record<string, number> {
  const h: Record<string, number> = {};
  for (const { code, details } of codes) {
    const key = code === grpc.status.INTERNAL ? `INTERNAL (${details.startsWith('Error deserializing request') ? 'undecodable' : details})` : grpc.status[code];
    h[key] = (h[key] ?? 0) + 1;
  }
  return h;
}

beforeAll(async () => {
  fixture = await startFaultServer('meshanics-badinput-');
  ({ root, serverDir, server, ctx } = fixture);
  tls = await rawDevice(ctx, 'fuzzer');
  VALID.Register = encode('Register', {
    hardware: { model: 'pi', soc: 'bcm', arch: 'arm64', cpuCores: 4, memoryBytes: 4e9, accelerators: ['npu'], os: 'linux', kernel: '6.1' },
    agentVersion: '0.1.0',
    tags: { site: 'lab', rack: '7' },
    capabilities: CAPABILITIES,
  });
  VALID.Heartbeat = encode('Heartbeat', { installed: [{ name: 'detector', kind: 'model', version: '1.0.0', sha256: 'a'.repeat(64), state: 'HEALTHY' }] });
  VALID.ReportArtifactStatus = encode('ReportArtifactStatus', {
    assignmentId: crypto.randomUUID(),
    state: 'APPLYING',
    sequence: 5,
    reason: 'x',
    bytesDone: 1,
    bytesTotal: 2,
    deviceTime: new Date().toISOString(),
  });
  VALID.UploadLogs = encode('UploadLogs', { logRequestId: crypto.randomUUID(), data: gzipSync('hello') });
  const client = rawClient(server.grpc, tls);
  expect((await rawUnary(client, 'Register', VALID.Register)).code).toBe(0);
  client.close();
}, 60_000);

afterAll(async () => {
  recordResults('bad-input', results);
  await fixture?.close();
});

describe('the server under bad device input', () => {
  it(
    `answers random and truncated protobuf at every method with errors and stays up (${RANDOM_PER_METHOD} random + every truncation per method, seed ${SEED})`,
    async () => {
      const before = rss();
      const random = prng(SEED);
      const client = rawClient(server.grpc, tls);
      const perMethod: Record<string, unknown> = {};
      try {
        for (const method of METHODS) {
          const answers: Array<{ code: number; details: string }> = [];
          const inputs: Buffer[] = [];
          for (let i = 0; i < RANDOM_PER_METHOD; i++) {
            const len = Math.floor(random() ** 2 * 4096);
            inputs.push(Buffer.from(Array.from({ length: len }, () => Math.floor(random() * 256))));
          }
          for (let cut = 0; cut < VALID[method]!.length; cut++) inputs.push(VALID[method]!.subarray(0, cut));
          // Mutations of a valid message: one flipped byte each.
          for (let i = 0; i < 50; i++) {
            const m = Buffer.from(VALID[method]!);
            m[Math.floor(random() * m.length)]! ^= 1 << Math.floor(random() * 8);
            inputs.push(m);
          }
          for (const bytes of inputs) {
            const res = method === 'UploadLogs' ? await rawUpload(client, [bytes], 10_000) : await rawUnary(client, method, bytes);
            answers.push({ code: res.code, details: res.details });
          }
          const h = histogram(answers);
          perMethod[method] = { calls: inputs.length, answers: h };
          // No handler crashed on garbage: "internal error" is what an unexpected exception becomes.
          expect(h['INTERNAL (internal error)'] ?? 0, `${method}: ${JSON.stringify(h)}`).toBe(0);
          // Everything that was not refused decoded to something the validation accepted.
          expect(
            Object.keys(h).every((k) => k !== 'UNKNOWN'),
            JSON.stringify(h),
          ).toBe(true);
        }
      } finally {
        client.close();
      }
      await healthy();
      const after = rss();
      results.randomProtobuf = { perMethod, rssKiB: { before, after } };
      console.log(`[faults] random/truncated protobuf: ${JSON.stringify(perMethod)}; server VmRSS ${before} -> ${after} KiB`);
      expect(after - before).toBeLessThan(150 * 1024);
    },
    LONG ? 600_000 : 120_000,
  );

  it('refuses oversized fields and messages with INVALID_ARGUMENT or RESOURCE_EXHAUSTED and stays up', async () => {
    const client = rawClient(server.grpc, tls);
    const cases: Array<[string, string, Buffer, number, RegExp]> = [
      [
        'reason of 3000 characters',
        'ReportArtifactStatus',
        encode('ReportArtifactStatus', { assignmentId: crypto.randomUUID(), state: 'FAILED', sequence: 9, reason: 'r'.repeat(3000) }),
        grpc.status.INVALID_ARGUMENT,
        /^reason is longer than 2048 characters$/,
      ],
      [
        'assignment id of 100 KB',
        'ReportArtifactStatus',
        encode('ReportArtifactStatus', { assignmentId: 'a'.repeat(100_000), state: 'FAILED', sequence: 9 }),
        grpc.status.INVALID_ARGUMENT,
        /^assignmentId is longer than 64 characters$/,
      ],
      [
        'sequence beyond 2^53',
        'ReportArtifactStatus',
        encode('ReportArtifactStatus', { assignmentId: crypto.randomUUID(), state: 'FAILED', sequence: '18446744073709551615' }),
        grpc.status.INVALID_ARGUMENT,
        /^sequence must be a non-negative integer$/,
      ],
      [
        'agent version of 500 KB',
        'Register',
        encode('Register', { agentVersion: 'v'.repeat(500_000), capabilities: CAPABILITIES }),
        grpc.status.INVALID_ARGUMENT,
        /^agentVersion is longer than 64 characters$/,
      ],
      [
        '65 tags',
        'Register',
        encode('Register', { agentVersion: '1', capabilities: CAPABILITIES, tags: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }),
        grpc.status.INVALID_ARGUMENT,
        /^more than 64 tags$/,
      ],
      [
        '257 installed artifacts',
        'Heartbeat',
        encode('Heartbeat', { installed: Array.from({ length: 257 }, (_, i) => ({ name: `a${i}`, kind: 'model', version: '1', sha256: 'a'.repeat(64), state: 'HEALTHY' })) }),
        grpc.status.INVALID_ARGUMENT,
        /^more than 256 installed artifacts$/,
      ],
      [
        'control characters in a tag',
        'Register',
        encode('Register', { agentVersion: '1', capabilities: CAPABILITIES, tags: { k: 'a\u0000b' } }),
        grpc.status.INVALID_ARGUMENT,
        /control characters/,
      ],
      [
        'a 2 MiB message (limit 1 MiB)',
        'Heartbeat',
        Buffer.concat([encode('Heartbeat', {}), Buffer.from([0x0a]), Buffer.from([0x80, 0x80, 0x80, 0x01]), crypto.randomBytes(2 * 1024 * 1024)]),
        grpc.status.RESOURCE_EXHAUSTED,
        /./,
      ],
      ['a 64 MiB message', 'Register', crypto.randomBytes(64 * 1024 * 1024), grpc.status.RESOURCE_EXHAUSTED, /./],
    ];
    const before = rss();
    const rows = [];
    try {
      for (const [what, method, bytes, code, details] of cases) {
        const res = await rawUnary(client, method, bytes, 30_000);
        rows.push({ what, method, code: grpc.status[res.code], details: res.details.slice(0, 120) });
        expect(grpc.status[res.code], `${what}: ${res.details}`).toBe(grpc.status[code]);
        expect(res.details, what).toMatch(details);
      }
    } finally {
      client.close();
    }
    await healthy();
    const after = rss();
    results.oversized = { cases: rows, rssKiB: { before, after } };
    expect(after - before).toBeLessThan(150 * 1024);
  }, 120_000);

  it(
    'ends UploadLogs streams past their cap with RESOURCE_EXHAUSTED, keeps nothing, and its memory stays bounded',
    async () => {
      const maxBytes = 64 * 1024;
      const { logRequestId } = await requestDeviceLogs(ctx, { fleet: FLEET, device: 'fuzzer', maxBytes, actor: 'test:faults' });
      const chunk = (first: boolean) =>
        encode('UploadLogs', {
          logRequestId: first ? logRequestId : '',
          data: first ? Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08]), crypto.randomBytes(64 * 1024 - 3)]) : crypto.randomBytes(64 * 1024),
        });
      async function* stream(totalBytes: number) {
        for (let sent = 0; sent < totalBytes; sent += 64 * 1024) yield chunk(sent === 0);
      }
      const before = rss();
      const samples = [before];
      const answers = [];
      const rounds = LONG ? 20 : 4;
      const parallel = 8;
      const perStream = 32 * 1024 * 1024;
      for (let round = 0; round < rounds; round++) {
        const clients = Array.from({ length: parallel }, () => rawClient(server.grpc, tls));
        const res = await Promise.all(clients.map((c) => rawUpload(c, stream(perStream), 60_000)));
        for (const c of clients) c.close();
        answers.push(...res.map((r) => ({ code: grpc.status[r.code], details: r.details, sentBeforeAnswer: r.written })));
        samples.push(rss());
      }
      for (const a of answers) {
        expect(a.code).toBe('RESOURCE_EXHAUSTED');
        expect(a.details).toBe(`log bundle exceeds ${maxBytes + 64 * 1024} bytes (the request's maxBytes plus gzip overhead)`);
      }
      // A single frame above the message limit is refused by gRPC itself.
      const big = await rawUpload(rawClient(server.grpc, tls), [encode('UploadLogs', { logRequestId, data: crypto.randomBytes(2 * 1024 * 1024) })]);
      expect(grpc.status[big.code]).toBe('RESOURCE_EXHAUSTED');
      // Nothing half-written stays; the request is still open; a proper upload then succeeds.
      const logsDir = path.join(serverDir, 'logs');
      expect((await readdir(logsDir).catch(() => [])).filter((n) => n.startsWith('.'))).toEqual([]);
      expect((await listLogRequests(ctx, { fleet: FLEET, device: 'fuzzer' })).find((r) => r.logRequestId === logRequestId)?.status).toBe('pending');
      const bundle = gzipSync(Buffer.from('line one\nline two\n'));
      const ok = await rawUpload(rawClient(server.grpc, tls), [encode('UploadLogs', { logRequestId, data: bundle })]);
      expect(ok.code, ok.details).toBe(0);
      expect((await readFile(path.join(logsDir, `${logRequestId}.gz`))).equals(bundle)).toBe(true);
      await healthy();
      const after = rss();
      const sent = answers.reduce((n, a) => n + a.sentBeforeAnswer, 0);
      results.uploadsPastCap = {
        streams: answers.length,
        bytesOfferedPerStream: perStream,
        bytesWrittenByClientsBeforeTheAnswer: sent,
        answer: answers[0],
        rssKiB: samples,
      };
      console.log(
        `[faults] ${answers.length} uploads of 32 MiB against a ${maxBytes} B cap: ${answers[0]?.code}; clients got ${Math.round(sent / 1048576)} MiB out before the answer; server VmRSS ${samples.join(' -> ')} KiB`,
      );
      expect(Math.max(...samples) - before).toBeLessThan(200 * 1024);
      expect(after - before).toBeLessThan(150 * 1024);
    },
    LONG ? 900_000 : 180_000,
  );
});

describe('the agent under a heartbeat reply with 10,000 assignments', () => {
  let fakeRoot: string;
  let creds: string;
  const r = (f: string) => readFile(f, 'utf8');

  beforeAll(async () => {
    fakeRoot = path.join(root, 'flood');
    creds = path.join(fakeRoot, 'creds');
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', FLEET, '--name', 'flooded', '--out', creds]);
  });

  async function flood(label: string, assignments: ReturnType<typeof floodAssignments>, observeMs: number) {
    const fake = await startFakeDeviceService({
      caPem: await r(path.join(creds, 'ca.crt')),
      certPem: await r(path.join(serverDir, 'pki', 'server.crt')),
      keyPem: await r(path.join(serverDir, 'pki', 'server.key')),
      assignments,
    });
    const dataDir = path.join(fakeRoot, label);
    const agent = spawnAgent([...agentRunArgs({ grpc: fake.address, artifacts: server.artifacts }, creds, dataDir), '--container-runtime', 'none', '--log-level', 'warn']);
    const samples: Array<Record<string, number>> = [];
    try {
      await waitFor('the first heartbeat', () => fake.stats.heartbeats > 0, { timeoutMs: 30_000 });
      const t0 = Date.now();
      while (Date.now() - t0 < observeMs) {
        await new Promise((res) => setTimeout(res, Math.min(5000, observeMs / 4)));
        expect(agent.proc.exitCode, `the agent exited: ${agent.lines.slice(-5).join('\n')}`).toBeNull();
        const size = await stat(path.join(dataDir, 'state', 'agent-state.json')).then(
          (s) => s.size,
          () => 0,
        );
        samples.push({
          t: Math.round((Date.now() - t0) / 1000),
          rssKiB: rssKiB(agent.proc.pid!),
          stateFileBytes: size,
          heartbeats: fake.stats.heartbeats,
          reportsDelivered: fake.stats.reports,
        });
      }
      const state = JSON.parse(await r(path.join(dataDir, 'state', 'agent-state.json')));
      const observed = {
        assignments: assignments.length,
        observeSeconds: observeMs / 1000,
        samples,
        inflight: Object.keys(state.inflight).length,
        outbox: state.outbox.length,
        reportsByState: fake.stats.reportsByState,
        reportSequenceRegressions: fake.stats.outOfOrder,
        capLogged: agent.lines.some((l) => l.includes('more artifacts than an agent takes')),
      };
      results[`flood-${label}`] = observed;
      console.log(`[faults] agent flooded (${label}): ${JSON.stringify(observed)}`);
      return { observed, samples, fake };
    } finally {
      await agent.stop('SIGKILL');
      await fake.close();
    }
  }

  it('10,000 assignments for one artifact name: one pipeline (the first wins), the agent stays up', async () => {
    const { observed, samples } = await flood('same-name', floodAssignments(10_000, { sameName: true }), 4000);
    expect(observed.reportsByState).toMatchObject({ DOWNLOADING: 1, FAILED: 1 });
    expect(Math.max(...samples.map((s) => s.rssKiB!))).toBeLessThan(512 * 1024);
    expect(observed.reportSequenceRegressions).toBe(0);
  }, 90_000);

  let distinct: Awaited<ReturnType<typeof flood>> | undefined;
  it('10,000 assignments with distinct names: the agent stays up, keeps heartbeating, memory under 512 MiB', async () => {
    distinct = await flood('distinct-names', floodAssignments(10_000), LONG ? 60_000 : 15_000);
    expect(distinct.samples.at(-1)!.heartbeats).toBeGreaterThan(3);
    expect(Math.max(...distinct.samples.map((s) => s.rssKiB!))).toBeLessThan(512 * 1024);
    expect(distinct.observed.reportSequenceRegressions).toBe(0);
  }, 180_000);

  // Was a bug (core/src/reconciler.ts, core/src/state/agent-state.ts): every distinct name
  // started its pipeline at once and each transition rewrote and fsynced the whole, growing
  // state document, so after 60 s only one report had reached the server. Now at most 4
  // pipelines run at once (the rest queued), one reply is taken for at most 256 names (an
  // error is logged), and concurrent state updates share one atomic write.
  it('10,000 assignments with distinct names: reports keep flowing (>= 100 delivered within 15 s)', () => {
    expect(distinct, 'the flood above did not run').toBeDefined();
    expect(distinct!.samples.at(-1)!.reportsDelivered).toBeGreaterThanOrEqual(100);
  });

  it('10,000 assignments with distinct names: at most 256 names taken from the reply (an error logged), at most 4 pipelines at once', () => {
    expect(distinct, 'the flood above did not run').toBeDefined();
    const { observed } = distinct!;
    expect(observed.capLogged).toBe(true);
    expect(observed.inflight).toBeLessThanOrEqual(4);
    const failed = (observed.reportsByState as Record<string, number>).FAILED ?? 0;
    expect(failed).toBeLessThanOrEqual(256);
    // Given a minute every one of the 256 taken has ended (its target does not exist).
    if (LONG) expect(failed).toBe(256);
  });
});
