// groups create | ls | show; rollouts create | ls | show | watch | approve | resume | abort
import type { Group, Rollout } from '../api-types.js';
import { type ApiClient, seg } from '../client.js';
import { type Command, type Context, FLEET_OPTION, intOpt, jsonArg, PAGING_OPTIONS, paging, requiredStr, str } from '../command.js';
import { ApiError, CliError, EXIT, UsageError } from '../errors.js';
import { ago, bar, keyValues, line, pageFooter, printJson, table, when } from '../output.js';
import { artifactRef } from './artifacts.js';

export const STATES = ['PENDING', 'DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY', 'ROLLED_BACK', 'FAILED'] as const;
const TERMINAL = new Set(['HEALTHY', 'ROLLED_BACK', 'FAILED']);

function csv(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** `10,50:manual,100` -> waves; `auto` is the default approval. */
export function parseWaves(raw: string): Array<{ percent: number; approval: 'auto' | 'manual' }> {
  return csv(raw).map((item) => {
    const m = /^(\d+(?:\.\d+)?)%?(?::(auto|manual))?$/.exec(item);
    if (!m) throw new UsageError(`--waves items are PERCENT[:auto|manual], e.g. 10,50:manual,100; not "${item}"`);
    return { percent: Number(m[1]), approval: (m[2] ?? 'auto') as 'auto' | 'manual' };
  });
}

const terminalCount = (counts: Record<string, number>) => [...TERMINAL].reduce((n, s) => n + (counts[s] ?? 0), 0);
const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

function countsText(counts: Record<string, number>): string {
  const parts = STATES.filter((s) => (counts[s] ?? 0) > 0).map((s) => `${s.toLowerCase()} ${counts[s]}`);
  return parts.length ? parts.join(', ') : 'no devices';
}

function statusText(r: Rollout): string {
  switch (r.status) {
    case 'waiting_approval':
      // currentWave is the last wave started; the one waiting is the next.
      return `wave ${r.currentWave + 2} of ${r.waves.length} waits for approval`;
    case 'running':
      return `running wave ${r.currentWave + 1} of ${r.waves.length}`;
    case 'halted':
      return `HALTED in wave ${(r.halt?.wave ?? r.currentWave) + 1} of ${r.waves.length}`;
    case 'aborted':
      return `aborted${r.abortPolicy ? ` (policy ${r.abortPolicy})` : ''}`;
    case 'completed':
    default: // and a status a newer server may send
      return r.status;
  }
}

export function renderRollout(r: Rollout): string {
  const lines: string[] = [];
  const probe = r.probe as { type?: string; timeoutSeconds?: number; attempts?: number };
  lines.push(
    keyValues([
      ['rollout', r.id],
      ['artifact', `${r.artifact.name}@${r.artifact.version} (${r.artifact.kind})`],
      ['fleet / group', `${r.fleet} / ${r.group}`],
      ['status', statusText(r)],
      ...(r.halt ? ([['halt reason', `${r.halt.reason} (${r.halt.failures} failure(s), tolerance ${r.halt.tolerance}, ${when(r.halt.at)})`]] as Array<[string, string]>) : []),
      ['progress', `${bar(terminalCount(r.counts), total(r.counts))} ${terminalCount(r.counts)}/${total(r.counts)} finished: ${countsText(r.counts)}`],
      ['probe', `${probe.type ?? '?'}, ${probe.attempts ?? '?'} attempt(s) of ${probe.timeoutSeconds ?? '?'} s`],
      ['max failure rate', r.strategy?.max_failure_rate ?? 0],
      ['created', `${when(r.createdAt)}${r.createdBy ? ` by ${r.createdBy}` : ''}`],
      ['updated', `${when(r.updatedAt)} (${ago(r.updatedAt)})`],
    ]),
  );
  lines.push('', 'Waves:');
  lines.push(
    table(
      ['WAVE', 'PERCENT', 'APPROVAL', 'STATUS', 'DEVICES', 'PROGRESS', 'STATES'],
      r.waves.map((w) => [
        w.index + 1,
        `${w.percent}%`,
        w.approval,
        w.status,
        w.devices,
        `${bar(terminalCount(w.counts), w.devices, 10)} ${terminalCount(w.counts)}/${w.devices}`,
        countsText(w.counts),
      ]),
    ),
  );
  if (r.devices) {
    lines.push('', 'Devices:');
    lines.push(
      r.devices.length
        ? table(
            ['DEVICE', 'WAVE', 'STATE', 'UPDATED', 'REASON'],
            r.devices.map((d) => [d.name, d.wave + 1, d.state, d.updatedAt ? ago(d.updatedAt) : '-', d.reason]),
          )
        : '  (none)',
    );
  }
  return lines.join('\n');
}

function summaryLine(r: Rollout): string {
  const t = new Date().toISOString().slice(11, 19);
  return `${t} ${statusText(r)}  ${bar(terminalCount(r.counts), total(r.counts), 20)} ${terminalCount(r.counts)}/${total(r.counts)}  ${countsText(r.counts)}`;
}

/** Parses a text/event-stream body into events. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: string }> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n');
    let at: number;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      let event = 'message';
      const data: string[] = [];
      for (const l of block.split('\n')) {
        if (l.startsWith(':')) continue;
        const colon = l.indexOf(':');
        const field = colon < 0 ? l : l.slice(0, colon);
        const value = colon < 0 ? '' : l.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}

export type WatchEnd = 'completed' | 'halted' | 'aborted' | 'waiting_approval';

function finished(r: Rollout, stopAtApproval: boolean): boolean {
  return r.status === 'completed' || r.status === 'halted' || r.status === 'aborted' || (stopAtApproval && r.status === 'waiting_approval');
}

/**
 * Follows a rollout through its server-sent events (reconnecting when the stream drops, and
 * polling every 2 s when the stream cannot be had) until it completes, halts or is aborted.
 */
export async function watchRollout(
  api: ApiClient,
  id: string,
  options: { timeoutMs?: number; stopAtApproval?: boolean; onUpdate?: (r: Rollout) => void; onRetry?: (err: Error) => void },
): Promise<Rollout> {
  const deadline = options.timeoutMs ? Date.now() + options.timeoutMs : Infinity;
  const stop = options.stopAtApproval === true;
  let last: Rollout | undefined;
  const seen = (r: Rollout) => {
    if (last && last.updatedAt === r.updatedAt && JSON.stringify(last) === JSON.stringify(r)) return;
    last = r;
    options.onUpdate?.(r);
  };
  const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
  let sse = true;
  while (Date.now() < deadline) {
    const remaining = deadline - Date.now();
    if (sse) {
      const abort = new AbortController();
      const timer = Number.isFinite(remaining) ? setTimeout(() => abort.abort(), remaining) : undefined;
      let result: Rollout | undefined;
      try {
        const res = await api.raw('GET', `/rollouts${seg(id)}/events`, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
        if (!res.body || !(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
          sse = false;
          continue;
        }
        for await (const ev of sseEvents(res.body)) {
          if (ev.event !== 'rollout') continue;
          const r = JSON.parse(ev.data) as Rollout;
          seen(r);
          if (finished(r, stop)) {
            // Leaving the loop cancels the stream; only then abort (an abort first would
            // surface as an error out of the loop).
            result = r;
            break;
          }
        }
      } catch (err) {
        if (err instanceof ApiError && err.status !== 404 && err.status < 500) throw err;
        if (err instanceof ApiError && err.status === 404) {
          // No such rollout, or no event route: polling tells which.
          sse = false;
        } else if ((err as Error).name !== 'AbortError') {
          options.onRetry?.(err as Error);
        }
      } finally {
        if (timer) clearTimeout(timer);
        abort.abort();
      }
      if (result) return result;
      if (Date.now() >= deadline) break;
      await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
      continue;
    }
    const r = await api.get<Rollout>(`/rollouts${seg(id)}`);
    seen(r);
    if (finished(r, stop)) return r;
    await sleep(Math.min(2000, Math.max(0, deadline - Date.now())));
  }
  throw new CliError(`rollout ${id} did not finish within the timeout (last status: ${last?.status ?? 'unknown'})`, EXIT.ERROR);
}

export function exitCodeForRollout(r: Rollout): number {
  if (r.status === 'halted') return EXIT.ROLLOUT_HALTED;
  if (r.status === 'aborted') return EXIT.ROLLOUT_ABORTED;
  return EXIT.OK;
}

/** Parses `90`, `90s`, `10m`, `2h` into milliseconds. */
function durationMs(raw: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!m) throw new UsageError(`--${name} must be a duration like 90s, 10m or 2h; not "${raw}"`);
  return Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as Record<string, number>)[m[2] ?? 's']!;
}

const WATCH_OPTIONS = {
  timeout: { type: 'string', arg: 'DURATION', description: 'give up (exit 1) after this long, e.g. 10m (default: no limit)' },
  'stop-at-approval': { type: 'boolean', description: 'also stop (exit 0) when a wave waits for approval' },
} as const;

async function runWatch(ctx: Context, id: string): Promise<number> {
  const timeout = str(ctx.values, 'timeout');
  const human = !ctx.json;
  let lastStatus = '';
  const final = await watchRollout(ctx.api(), id, {
    ...(timeout ? { timeoutMs: durationMs(timeout, 'timeout') } : {}),
    stopAtApproval: ctx.values['stop-at-approval'] === true,
    onRetry: (err) => ctx.out.stderr.write(`meshanics: the event stream broke (${err.message}); reconnecting\n`),
    onUpdate: (r) => {
      if (!human) return;
      line(ctx.out.stdout, summaryLine(r));
      if (r.status !== lastStatus && r.status === 'waiting_approval') {
        line(ctx.out.stdout, `         approve wave ${r.currentWave + 2} with: meshanics rollouts approve ${r.id}`);
      }
      lastStatus = r.status;
    },
  });
  if (ctx.json) printJson(ctx.out.stdout, final);
  else {
    line(ctx.out.stdout);
    line(ctx.out.stdout, renderRollout(final));
  }
  const code = exitCodeForRollout(final);
  if (code === EXIT.ROLLOUT_HALTED) ctx.out.stderr.write(`meshanics: rollout ${final.id} halted: ${final.halt?.reason ?? 'no reason given'}\n`);
  if (code === EXIT.ROLLOUT_ABORTED) ctx.out.stderr.write(`meshanics: rollout ${final.id} was aborted\n`);
  return code;
}

function printRollout(ctx: Context, r: Rollout): void {
  if (ctx.json) printJson(ctx.out.stdout, r);
  else line(ctx.out.stdout, renderRollout(r));
}

export const ROLLOUT_COMMANDS: Command[] = [
  {
    path: ['groups', 'create'],
    summary: 'create a static group of devices (names that match no device are reported, not dropped)',
    usage: '--fleet FLEET --name NAME --devices NAME,NAME,...',
    options: {
      ...FLEET_OPTION,
      name: { type: 'string', arg: 'NAME', description: 'group name' },
      devices: { type: 'string', arg: 'LIST', description: 'comma-separated device names' },
    },
    async run(ctx) {
      const g = await ctx.api().post<Group>('/groups', { fleet: ctx.requireFleet(), name: requiredStr(ctx, 'name'), devices: csv(requiredStr(ctx, 'devices')) });
      if (ctx.json) printJson(ctx.out.stdout, g);
      else line(ctx.out.stdout, `Created group ${g.fleet}/${g.name} with ${g.devices.length} device(s): ${g.devices.join(', ') || '-'}`);
      if (g.unresolved.length) ctx.out.stderr.write(`meshanics: warning: no device of fleet ${g.fleet} is named ${g.unresolved.join(', ')}\n`);
    },
  },
  {
    path: ['groups', 'ls'],
    summary: 'list static groups',
    usage: '[--fleet FLEET] [--limit N] [--offset N] [--all]',
    options: { ...FLEET_OPTION, ...PAGING_OPTIONS },
    async run(ctx) {
      const page = await ctx.api().list<Group>('/groups', { fleet: ctx.fleet() }, paging(ctx.values));
      if (ctx.json) return printJson(ctx.out.stdout, page);
      if (page.items.length === 0) line(ctx.out.stdout, 'No groups.');
      else line(ctx.out.stdout, table(['FLEET', 'NAME', 'DEVICES', 'UNRESOLVED'], page.items.map((g) => [g.fleet, g.name, g.devices.length, g.unresolved.join(',')])));
      const footer = pageFooter(page);
      if (footer) line(ctx.out.stdout, footer);
    },
  },
  {
    path: ['groups', 'show'],
    summary: 'show a group with its resolved and unresolved device names',
    usage: 'FLEET/NAME | NAME --fleet FLEET',
    options: { ...FLEET_OPTION },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const ref = ctx.positionals[0]!;
      const [fleet, name] = ref.includes('/') ? (ref.split('/', 2) as [string, string]) : [ctx.requireFleet(), ref];
      const g = await ctx.api().get<Group>(`/groups${seg(fleet, name)}`);
      if (ctx.json) return printJson(ctx.out.stdout, g);
      line(ctx.out.stdout, keyValues([['group', `${g.fleet}/${g.name}`], ['devices', g.devices.join(', ')], ['unresolved', g.unresolved.join(', ')]]));
    },
  },
  {
    path: ['rollouts', 'create'],
    summary: 'roll an artifact version out to a group, in waves, guarded by a probe',
    usage: '--fleet FLEET --artifact NAME@VERSION --group GROUP [--devices LIST] --probe-type TYPE --probe-spec JSON [--waves SPEC] [--max-failure-rate R] [--watch]',
    description: [
      'Waves are cumulative percentages of the group, the last 100: --waves 10,50:manual,100 starts 10 % at',
      'once, waits for an approval before reaching 50 %, then goes on to 100 % by itself. Without --waves',
      'there is one wave of 100 %. The first failure halts the rollout unless --max-failure-rate allows more.',
      'With --devices the group is created first from those device names.',
    ],
    options: {
      ...FLEET_OPTION,
      artifact: { type: 'string', arg: 'NAME@VERSION', description: 'the artifact version to roll out' },
      group: { type: 'string', arg: 'GROUP', description: 'the static group of devices' },
      devices: { type: 'string', arg: 'LIST', description: 'create --group first from these comma-separated device names' },
      'probe-type': { type: 'string', arg: 'TYPE', description: 'health probe type: file, http, exec' },
      'probe-spec': { type: 'string', arg: 'JSON|@FILE', description: "the probe type's spec, e.g. '{\"path\":\"/run/app/ready\"}'" },
      'probe-timeout': { type: 'string', arg: 'SECONDS', description: 'per probe attempt (1-300)' },
      'probe-attempts': { type: 'string', arg: 'N', description: 'probe attempts before rolling back (1-10)' },
      'probe-initial-delay': { type: 'string', arg: 'SECONDS', description: 'wait after applying before the first attempt' },
      probe: { type: 'string', arg: 'JSON|@FILE', description: 'the whole probe object instead of the --probe-* options' },
      waves: { type: 'string', arg: 'SPEC', description: 'PERCENT[:auto|manual],... cumulative, last 100 (default 100)' },
      'max-failure-rate': { type: 'string', arg: 'R', description: "failures tolerated, a fraction of the rollout's devices in [0, 1) (default 0: the first failure halts)" },
      strategy: { type: 'string', arg: 'JSON|@FILE', description: 'the whole strategy object instead of --waves / --max-failure-rate' },
      watch: { type: 'boolean', description: 'then follow it like "rollouts watch" (and exit like it)' },
      ...WATCH_OPTIONS,
    },
    examples: [
      'meshanics rollouts create --fleet lab --artifact detector@2.0.0 --group canary \\\n      --probe-type file --probe-spec \'{"path":"/run/detector/ready"}\' --waves 10,100:manual --watch',
    ],
    async run(ctx) {
      const fleet = ctx.requireFleet();
      const artifact = artifactRef(requiredStr(ctx, 'artifact'));
      const group = requiredStr(ctx, 'group');
      let probe: Record<string, unknown>;
      const probeJson = str(ctx.values, 'probe');
      if (probeJson !== undefined) {
        const p = await jsonArg('probe', probeJson);
        if (p === null || typeof p !== 'object' || Array.isArray(p)) throw new UsageError('--probe must be a JSON object');
        probe = p as Record<string, unknown>;
      } else {
        const specRaw = str(ctx.values, 'probe-spec');
        probe = { type: requiredStr(ctx, 'probe-type'), spec: specRaw === undefined ? {} : await jsonArg('probe-spec', specRaw) };
        const timeoutSeconds = intOpt(ctx.values, 'probe-timeout', { min: 1 });
        const attempts = intOpt(ctx.values, 'probe-attempts', { min: 1 });
        const initialDelaySeconds = intOpt(ctx.values, 'probe-initial-delay');
        if (timeoutSeconds !== undefined) probe.timeoutSeconds = timeoutSeconds;
        if (attempts !== undefined) probe.attempts = attempts;
        if (initialDelaySeconds !== undefined) probe.initialDelaySeconds = initialDelaySeconds;
      }
      let strategy: unknown;
      const strategyJson = str(ctx.values, 'strategy');
      const wavesRaw = str(ctx.values, 'waves');
      const rateRaw = str(ctx.values, 'max-failure-rate');
      if (strategyJson !== undefined) {
        if (wavesRaw !== undefined || rateRaw !== undefined) throw new UsageError('--strategy excludes --waves and --max-failure-rate');
        strategy = await jsonArg('strategy', strategyJson);
      } else if (wavesRaw !== undefined || rateRaw !== undefined) {
        const rate = rateRaw === undefined ? undefined : Number(rateRaw);
        if (rate !== undefined && (!Number.isFinite(rate) || rate < 0 || rate >= 1)) throw new UsageError(`--max-failure-rate must be a fraction in [0, 1), not "${rateRaw}"`);
        strategy = { waves: wavesRaw !== undefined ? parseWaves(wavesRaw) : [{ percent: 100, approval: 'auto' }], ...(rate !== undefined ? { max_failure_rate: rate } : {}) };
      }
      const api = ctx.api();
      const devicesRaw = str(ctx.values, 'devices');
      if (devicesRaw !== undefined) {
        const g = await api.post<Group>('/groups', { fleet, name: group, devices: csv(devicesRaw) });
        if (g.unresolved.length) ctx.out.stderr.write(`meshanics: warning: no device of fleet ${fleet} is named ${g.unresolved.join(', ')}\n`);
      }
      const r = await api.post<Rollout>('/rollouts', { fleet, artifact, group, probe, ...(strategy !== undefined ? { strategy } : {}) });
      if (ctx.values.watch === true) {
        if (!ctx.json) line(ctx.out.stdout, `Created rollout ${r.id}`);
        return runWatch(ctx, r.id);
      }
      printRollout(ctx, r);
    },
  },
  {
    path: ['rollouts', 'ls'],
    summary: 'list rollouts, newest first',
    usage: '[--fleet FLEET] [--status STATUS] [--limit N] [--offset N] [--all]',
    options: {
      ...FLEET_OPTION,
      status: { type: 'string', arg: 'STATUS', description: 'running, waiting_approval, halted, completed or aborted' },
      ...PAGING_OPTIONS,
    },
    async run(ctx) {
      const page = await ctx.api().list<Rollout>('/rollouts', { fleet: ctx.fleet(), status: str(ctx.values, 'status') }, paging(ctx.values));
      if (ctx.json) return printJson(ctx.out.stdout, page);
      if (page.items.length === 0) line(ctx.out.stdout, 'No rollouts.');
      else
        line(
          ctx.out.stdout,
          table(
            ['ID', 'FLEET', 'ARTIFACT', 'GROUP', 'STATUS', 'WAVE', 'PROGRESS', 'CREATED'],
            page.items.map((r) => [
              r.id,
              r.fleet,
              r.artifact ? `${r.artifact.name}@${r.artifact.version}` : '-',
              r.group,
              r.status,
              r.waves ? `${r.currentWave + 1}/${r.waves.length}` : '-',
              r.counts ? `${terminalCount(r.counts)}/${total(r.counts)}` : '-',
              when(r.createdAt),
            ]),
          ),
        );
      const footer = pageFooter(page);
      if (footer) line(ctx.out.stdout, footer);
    },
  },
  {
    path: ['rollouts', 'show'],
    summary: 'show a rollout: status, halt reason, waves and every device',
    usage: 'ID',
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      printRollout(ctx, await ctx.api().get<Rollout>(`/rollouts${seg(ctx.positionals[0]!)}`));
    },
  },
  {
    path: ['rollouts', 'watch'],
    summary: 'follow a rollout live until it completes (exit 0), halts (exit 7) or is aborted (exit 8)',
    usage: 'ID [--timeout DURATION] [--stop-at-approval]',
    description: [
      'Reads the rollout\'s server-sent events (GET /api/v1/rollouts/ID/events), reconnecting when the',
      'stream drops; prints a line per change, then the rollout. A wave waiting for approval keeps it',
      'waiting unless --stop-at-approval.',
    ],
    options: { ...WATCH_OPTIONS },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      return runWatch(ctx, ctx.positionals[0]!);
    },
  },
  {
    path: ['rollouts', 'approve'],
    summary: 'start the wave that waits for approval (needs a key with the approve right)',
    usage: 'ID',
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      printRollout(ctx, await ctx.api().post<Rollout>(`/rollouts${seg(ctx.positionals[0]!)}/approve`));
    },
  },
  {
    path: ['rollouts', 'resume'],
    summary: 'resume a halted rollout, acknowledging the failures so far (needs the approve right)',
    usage: 'ID',
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      printRollout(ctx, await ctx.api().post<Rollout>(`/rollouts${seg(ctx.positionals[0]!)}/resume`));
    },
  },
  {
    path: ['rollouts', 'abort'],
    summary: 'abort a running or halted rollout; --policy revert sends updated devices back',
    usage: 'ID [--policy keep|revert]',
    options: { policy: { type: 'string', arg: 'keep|revert', description: 'keep (default): devices stay where they are; revert: updated devices go back to their previous version' } },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const policy = str(ctx.values, 'policy');
      if (policy !== undefined && policy !== 'keep' && policy !== 'revert') throw new UsageError(`--policy must be keep or revert, not "${policy}"`);
      printRollout(ctx, await ctx.api().post<Rollout>(`/rollouts${seg(ctx.positionals[0]!)}/abort`, policy ? { policy } : {}));
    },
  },
];
