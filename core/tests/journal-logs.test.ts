// Log collection from the agent's own journal unit (device API spec: logs come "only from an
// allowlisted source (the agent's own service journal)"), against a REAL journal: entries are
// written by systemd-journal-remote (from journal export format) into a directory, and the
// agent's collector reads it with the real journalctl (--directory). Checked: the time window
// (since/until), the byte budget, and that another unit's lines never appear. Without the
// tools the tests are skipped saying why, except under CI=true, where that is a failure.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectLogs, type LogSource } from '../src/logs/collect.js';
import { LogUploader } from '../src/logs/log-uploader.js';
import type { DeviceClient } from '../src/runtime/device-client.js';

const JOURNALCTL = ['/usr/bin/journalctl', '/bin/journalctl'].find((p) => existsSync(p));
const JOURNAL_REMOTE = ['/usr/lib/systemd/systemd-journal-remote', '/lib/systemd/systemd-journal-remote'].find((p) => existsSync(p));
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const missing = [
  JOURNALCTL ? undefined : 'journalctl (apt-get install systemd)',
  JOURNAL_REMOTE ? undefined : 'systemd-journal-remote (apt-get install systemd-journal-remote)',
].filter(Boolean);

if (missing.length > 0) {
  if (IN_CI) {
    describe('journal tools (required in CI)', () => {
      it('are installed', () => {
        throw new Error(`CI=true but ${missing.join(' and ')} missing: the journal log collection cannot be tested`);
      });
    });
  } else {
    console.warn(`[core] real-journal log tests skipped: ${missing.join(' and ')} missing`);
  }
}

const UNIT = 'meshanics-agent.service';
const BOOT = '0123456789abcdef0123456789abcdef';
/** Whole seconds (journalctl's --since/--until resolution), a minute ago. */
const T0 = (Math.floor(Date.now() / 1000) - 60) * 1000;

interface Entry {
  atMs: number;
  unit: string;
  message: string;
  extra?: Record<string, string>;
}

/** Journal export format (one field per line, an empty line after each entry). */
function exportFormat(entries: Entry[]): string {
  return entries
    .map((e, i) =>
      [
        `__REALTIME_TIMESTAMP=${e.atMs * 1000}`,
        `__MONOTONIC_TIMESTAMP=${i + 1}`,
        `_BOOT_ID=${BOOT}`,
        '_HOSTNAME=edge-test',
        `_SYSTEMD_UNIT=${e.unit}`,
        `_PID=${1000 + i}`,
        `MESSAGE=${e.message}`,
        ...Object.entries(e.extra ?? {}).map(([k, v]) => `${k}=${v}`),
        '',
        '',
      ].join('\n'),
    )
    .join('');
}

async function writeJournal(dir: string, entries: Entry[]): Promise<void> {
  const child = spawn(JOURNAL_REMOTE!, [`--output=${path.join(dir, 'remote.journal')}`, '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(exportFormat(entries));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`systemd-journal-remote exited ${code}: ${stderr}`);
}

const agentLine = (msg: string) => JSON.stringify({ level: 30, service: 'meshanics-agent', msg });
const ENTRIES: Entry[] = [
  { atMs: T0, unit: UNIT, message: agentLine('early') },
  { atMs: T0 + 10_000, unit: UNIT, message: agentLine('middle') },
  // Another unit's line in the same second, one naming our unit in a field it may set itself
  // (only PID 1's UNIT= counts for journalctl --unit), and another unit's whose name starts like ours.
  { atMs: T0 + 10_000, unit: 'other.service', message: 'other-secret-1' },
  { atMs: T0 + 10_500, unit: 'sshd.service', message: 'other-secret-2', extra: { UNIT: UNIT } },
  { atMs: T0 + 11_000, unit: 'meshanics-agent.service-evil.service', message: 'other-secret-3' },
  { atMs: T0 + 20_000, unit: UNIT, message: agentLine('late') },
  // Enough for the byte budget: 100 lines of about 300 bytes of JSON each.
  ...Array.from({ length: 100 }, (_, i) => ({ atMs: T0 + 30_000 + i, unit: UNIT, message: agentLine(`bulk-${i}-${'x'.repeat(40)}`) })),
];

function messages(bundle: Buffer): string[] {
  return bundle
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const entry = JSON.parse(line) as { MESSAGE: string; _SYSTEMD_UNIT: string };
      expect(entry._SYSTEMD_UNIT).toBe(UNIT);
      return (JSON.parse(entry.MESSAGE) as { msg: string }).msg;
    });
}

describe.skipIf(missing.length > 0)('journal log collection against a real journal (systemd-journal-remote + journalctl --directory)', () => {
  let source: LogSource;
  let dir: string;

  beforeAll(async () => {
    // Kept for the whole file (helpers' tempDir is removed after each test).
    dir = await mkdtemp(path.join(os.tmpdir(), 'meshanics-journal-'));
    await writeJournal(dir, ENTRIES);
    source = { kind: 'journald', unit: UNIT, journalctl: JOURNALCTL!, directory: dir };
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reads the agent unit's entries in order, and never another unit's", async () => {
    const bundle = await collectLogs(source, { maxBytes: 16 * 1024 * 1024 });
    const got = messages(bundle);
    expect(got.slice(0, 3)).toEqual(['early', 'middle', 'late']);
    expect(got).toHaveLength(103);
    expect(bundle.toString('utf8')).not.toContain('other-secret');
  });

  it('keeps to the window: since and until select the middle entry only', async () => {
    const bundle = await collectLogs(source, { since: T0 + 5_000, until: T0 + 15_000, maxBytes: 1 << 20 });
    expect(messages(bundle)).toEqual(['middle']);
    expect(bundle.toString('utf8')).not.toContain('other-secret');
  });

  it('keeps to the byte budget with whole entries only', async () => {
    const all = await collectLogs(source, { maxBytes: 16 * 1024 * 1024 });
    const budget = 2000;
    const bundle = await collectLogs(source, { maxBytes: budget });
    expect(bundle.length).toBeLessThanOrEqual(budget);
    expect(bundle.length).toBeGreaterThan(budget - 600);
    // The first entries of the full read, cut at an entry boundary (every line parses).
    expect(bundle.at(-1)).toBe(0x0a);
    const got = messages(bundle);
    expect(got.length).toBeGreaterThan(3);
    expect(got).toEqual(messages(all).slice(0, got.length));
  });

  it("answers a log request's window (ISO times) and byte budget through the agent's uploader", async () => {
    const uploads: Array<{ id: string; bundle: Buffer }> = [];
    // The upload transport is not what is tested here (tests/e2e covers UploadLogs over mTLS):
    // a stand-in client that keeps the gzipped bundle.
    const client = {
      uploadLogs: async (id: string, gz: Buffer) => {
        uploads.push({ id, bundle: gunzipSync(gz) });
        return gz.length;
      },
    } as unknown as DeviceClient;
    const uploader = new LogUploader(source, pino({ level: 'silent' }));
    await uploader.handle(
      [
        { logRequestId: 'window', since: new Date(T0 + 5_000).toISOString(), until: new Date(T0 + 25_000).toISOString(), maxBytes: 1 << 20 },
        { logRequestId: 'budget', since: new Date(T0 + 30_000).toISOString(), until: '', maxBytes: 1000 },
      ],
      client,
    );
    expect(uploads.map((u) => u.id)).toEqual(['window', 'budget']);
    expect(messages(uploads[0]!.bundle)).toEqual(['middle', 'late']);
    expect(uploads[1]!.bundle.length).toBeLessThanOrEqual(1000);
    expect(messages(uploads[1]!.bundle)[0]).toMatch(/^bulk-0-/);
    for (const u of uploads) expect(u.bundle.toString('utf8')).not.toContain('other-secret');
  });
});
