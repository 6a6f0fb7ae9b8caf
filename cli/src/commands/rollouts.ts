// rollouts create | ls | show | devices | watch | approve | resume | abort: the commands and their options.
// How a rollout is printed is rollout-view.ts; how one is followed, rollout-watch.ts.
import type { Group, Rollout, RolloutDevice, RolloutDevicesPage, RolloutSummary } from '../api-types.js';
import { seg } from '../client.js';
import { type Command, type Context, csv, FLEET_OPTION, intOpt, jsonArg, PAGING_OPTIONS, paging, requiredStr, str } from '../command.js';
import { EXIT, UsageError } from '../errors.js';
import { line, pageFooter, printJson, table, when } from '../output.js';
import { artifactRef } from './artifacts.js';
import { devicesTable, renderRollout, STATES, summaryLine, terminalCount, total, type ShownRollout } from './rollout-view.js';
import { exitCodeForRollout, watchRollout } from './rollout-watch.js';

/** `10,50:manual,100` -> waves; `auto` is the default approval. */
export function parseWaves(raw: string): Array<{ percent: number; approval: 'auto' | 'manual' }> {
  return csv(raw).map((item) => {
    const m = /^(\d+(?:\.\d+)?)%?(?::(auto|manual))?$/.exec(item);
    if (!m) throw new UsageError(`--waves items are PERCENT[:auto|manual], e.g. 10,50:manual,100; not "${item}"`);
    return { percent: Number(m[1]), approval: (m[2] ?? 'auto') as 'auto' | 'manual' };
  });
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

/** Devices `rollouts show` lists in a terminal. */
const SHOWN_DEVICES = 100;

/** A strategy has at most 20 waves (the server's schema). */
const MAX_WAVES = 20;

/** `--summary`: the rollout without its per-device list (a rollout of 36,000 devices is 9 MB with it). */
const SUMMARY_OPTION = {
  summary: { type: 'boolean', description: 'without the per-device list (for rollouts of many devices; page them with the API)' },
} as const;

/** The path of an action, asking for the summary with --summary. */
const actionPath = (ctx: Context, action: string) => `/rollouts${seg(ctx.positionals[0]!)}/${action}${ctx.values.summary === true ? '?view=summary' : ''}`;

function printRollout(ctx: Context, r: ShownRollout): void {
  if (ctx.json) printJson(ctx.out.stdout, r);
  else line(ctx.out.stdout, renderRollout(r));
}

export const ROLLOUT_COMMANDS: Command[] = [
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
      'probe-spec': { type: 'string', arg: 'JSON|@FILE', description: 'the probe type\'s spec, e.g. \'{"path":"/run/app/ready"}\'' },
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
    summary: 'show a rollout: status, halt reason, waves and its devices',
    usage: 'ID [--summary]',
    description: [
      `The table lists the first ${SHOWN_DEVICES} devices in plan order ("rollouts devices" pages the rest);`,
      '--json prints the whole detail, every device included.',
    ],
    options: { ...SUMMARY_OPTION },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const id = seg(ctx.positionals[0]!);
      const api = ctx.api();
      if (ctx.values.summary === true) return printRollout(ctx, await api.get<RolloutSummary>(`/rollouts${id}/summary`));
      if (ctx.json) return printRollout(ctx, await api.get<Rollout>(`/rollouts${id}`));
      // A terminal reads a page, not the detail: at 36,000 devices that is 9 MB and as many rows.
      const [summary, first] = await Promise.all([
        api.get<RolloutSummary>(`/rollouts${id}/summary`),
        api.get<RolloutDevicesPage>(`/rollouts${id}/devices`, { limit: SHOWN_DEVICES }),
      ]);
      line(ctx.out.stdout, renderRollout({ ...summary, devices: first.items }));
      if (first.next !== null) {
        line(
          ctx.out.stdout,
          `(the first ${SHOWN_DEVICES} of ${total(summary.counts)}; the rest: meshanics rollouts devices ${ctx.positionals[0]} --after ${first.next}, or --all)`,
        );
      }
    },
  },
  {
    path: ['rollouts', 'devices'],
    summary: "a page of a rollout's devices in plan order, of one wave or showing one state",
    usage: 'ID [--wave N] [--state STATE] [--limit N] [--after POSITION] [--all]',
    description: [
      'Pages through the rollout from an index (GET /api/v1/rollouts/ID/devices), so a page deep in a',
      'rollout of tens of thousands of devices costs what the first does. A page that is not the last',
      'ends with the --after of the next one; --all reads them all.',
    ],
    options: {
      wave: { type: 'string', arg: 'N', description: 'only the devices of wave N, counted from 1 as "rollouts show" numbers them (the API and --json count from 0)' },
      state: { type: 'string', arg: 'STATE', description: `only the devices showing this state: ${STATES.join(', ')}` },
      limit: { type: 'string', arg: 'N', description: 'page size (default 200, with --all 1000; at most 1000)' },
      after: { type: 'string', arg: 'POSITION', description: 'start after this position: the "next" a page ended with' },
      all: { type: 'boolean', description: 'every page from --after on' },
    },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const wave = intOpt(ctx.values, 'wave', { min: 1, max: MAX_WAVES });
      const rawState = str(ctx.values, 'state');
      const state = rawState?.toUpperCase();
      if (state !== undefined && !(STATES as readonly string[]).includes(state)) throw new UsageError(`--state must be one of ${STATES.join(', ')}; not "${rawState}"`);
      const limit = intOpt(ctx.values, 'limit', { min: 1, max: 1000 });
      let after = intOpt(ctx.values, 'after', { max: 2 ** 31 - 1 });
      const path = `/rollouts${seg(ctx.positionals[0]!)}/devices`;
      const query = { ...(wave !== undefined ? { wave: wave - 1 } : {}), ...(state !== undefined ? { state } : {}) };
      const api = ctx.api();
      const items: RolloutDevice[] = [];
      let page: RolloutDevicesPage;
      do {
        page = await api.get<RolloutDevicesPage>(path, { ...query, limit: limit ?? (ctx.values.all === true ? 1000 : undefined), after });
        items.push(...page.items);
        after = page.next ?? undefined;
      } while (ctx.values.all === true && page.next !== null);
      if (ctx.json) return printJson(ctx.out.stdout, { items, next: page.next });
      line(ctx.out.stdout, items.length ? devicesTable(items) : 'No devices.');
      if (page.next !== null) line(ctx.out.stdout, `(more: --after ${page.next}, or --all)`);
    },
  },
  {
    path: ['rollouts', 'watch'],
    summary: 'follow a rollout live until it completes (exit 0), halts (exit 7) or is aborted (exit 8)',
    usage: 'ID [--timeout DURATION] [--stop-at-approval]',
    description: [
      "Reads the rollout's server-sent events (GET /api/v1/rollouts/ID/events), reconnecting when the",
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
    usage: 'ID [--summary]',
    options: { ...SUMMARY_OPTION },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      printRollout(ctx, await ctx.api().post<ShownRollout>(actionPath(ctx, 'approve')));
    },
  },
  {
    path: ['rollouts', 'resume'],
    summary: 'resume a halted rollout, acknowledging the failures so far (needs the approve right)',
    usage: 'ID [--summary]',
    options: { ...SUMMARY_OPTION },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      printRollout(ctx, await ctx.api().post<ShownRollout>(actionPath(ctx, 'resume')));
    },
  },
  {
    path: ['rollouts', 'abort'],
    summary: 'abort a running or halted rollout; --policy revert sends updated devices back',
    usage: 'ID [--policy keep|revert] [--summary]',
    options: {
      ...SUMMARY_OPTION,
      policy: { type: 'string', arg: 'keep|revert', description: 'keep (default): devices stay where they are; revert: updated devices go back to their previous version' },
    },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const policy = str(ctx.values, 'policy');
      if (policy !== undefined && policy !== 'keep' && policy !== 'revert') throw new UsageError(`--policy must be keep or revert, not "${policy}"`);
      printRollout(ctx, await ctx.api().post<ShownRollout>(actionPath(ctx, 'abort'), policy ? { policy } : {}));
    },
  },
];
