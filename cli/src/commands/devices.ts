// devices ls | show | decommission, enroll-token create | ls | revoke
import type { DeviceDetail, DeviceSummary, EnrollmentToken } from '../api-types.js';
import { seg } from '../client.js';
import { type Command, deviceRef, FLEET_OPTION, intOpt, PAGING_OPTIONS, paging, str } from '../command.js';
import { UsageError } from '../errors.js';
import { ago, keyValues, line, pageFooter, printJson, table, when } from '../output.js';

export function deviceStatus(d: Pick<DeviceSummary, 'online' | 'decommissionedAt'>): string {
  if (d.decommissionedAt) return 'decommissioned';
  return d.online ? 'online' : 'offline';
}

function tags(t: Record<string, string>): string {
  return Object.entries(t)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** Parses `1d`, `12h`, `30m`, `90s` or plain seconds. */
function seconds(raw: string, name: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(raw.trim());
  if (!m) throw new UsageError(`--${name} must be seconds or a duration like 30m, 12h, 7d; not "${raw}"`);
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]!]!;
}

export const DEVICE_COMMANDS: Command[] = [
  {
    path: ['devices', 'ls'],
    summary: 'list devices: online or offline, last seen, agent version, tags',
    usage: '[--fleet FLEET] [--tag K=V]... [--online | --offline] [--limit N] [--offset N] [--all]',
    options: {
      ...FLEET_OPTION,
      tag: { type: 'string', arg: 'K=V', multiple: true, description: 'only devices with this tag (all given must match)' },
      online: { type: 'boolean', description: 'only devices that heartbeat within three of their intervals' },
      offline: { type: 'boolean', description: 'only devices that do not' },
      ...PAGING_OPTIONS,
    },
    async run(ctx) {
      const { values } = ctx;
      if (values.online && values.offline) throw new UsageError('--online and --offline exclude each other');
      const tagList = (values.tag as string[] | undefined) ?? [];
      for (const t of tagList) if (!/^[^=]+=/.test(t)) throw new UsageError(`--tag must be K=V, not "${t}"`);
      const page = await ctx
        .api()
        .list<DeviceSummary>('/devices', { fleet: ctx.fleet(), tag: tagList, online: values.online ? true : values.offline ? false : undefined }, paging(values));
      if (ctx.json) return printJson(ctx.out.stdout, page);
      if (page.items.length === 0) line(ctx.out.stdout, 'No devices.');
      else
        line(
          ctx.out.stdout,
          table(
            ['FLEET', 'NAME', 'STATUS', 'LAST SEEN', 'AGENT', 'TAGS'],
            page.items.map((d) => [d.fleet, d.name, deviceStatus(d), ago(d.lastSeenAt), d.agentVersion, tags(d.tags)]),
          ),
        );
      const footer = pageFooter(page);
      if (footer) line(ctx.out.stdout, footer);
    },
  },
  {
    path: ['devices', 'show'],
    summary: 'show a device: profile, installed artifacts, recent history',
    usage: 'FLEET/NAME | NAME --fleet FLEET',
    options: { ...FLEET_OPTION, history: { type: 'string', arg: 'N', description: 'history entries to print (default 10)' } },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const { fleet, name } = deviceRef(ctx, ctx.positionals[0]!);
      const d = await ctx.api().get<DeviceDetail>(`/devices${seg(fleet, name)}`);
      if (ctx.json) return printJson(ctx.out.stdout, d);
      const hw = d.hardware ?? {};
      const o = ctx.out.stdout;
      line(
        o,
        keyValues([
          ['device', `${d.fleet}/${d.name}`],
          ['status', deviceStatus(d)],
          ['last seen', d.lastSeenAt ? `${when(d.lastSeenAt)} (${ago(d.lastSeenAt)})` : 'never'],
          ['agent', d.agentVersion],
          ['identity', d.spiffeId],
          ['tags', tags(d.tags)],
          [
            'hardware',
            Object.entries(hw)
              .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
              .join(', '),
          ],
          ['capabilities', d.capabilities.map((c) => [c.kind, c.name, c.version].filter(Boolean).join(':')).join(', ')],
          ['registered', when(d.registeredAt)],
          ...(d.decommissionedAt ? ([['decommissioned', when(d.decommissionedAt)]] as Array<[string, string]>) : []),
        ]),
      );
      line(o);
      line(o, 'Installed:');
      line(
        o,
        d.installed.length
          ? table(
              ['NAME', 'KIND', 'VERSION', 'STATE', 'UPDATED'],
              d.installed.map((i) => [i.name, i.kind, i.version, i.state, ago(i.updatedAt)]),
            )
          : '  (nothing)',
      );
      const n = intOpt(ctx.values, 'history', { min: 0, max: 100 }) ?? 10;
      line(o);
      line(o, `History (newest first, ${Math.min(n, d.history.length)} of ${d.history.length}):`);
      line(
        o,
        d.history.length
          ? table(
              ['SEQ', 'WHEN', 'ARTIFACT', 'STATE', 'REASON'],
              d.history.slice(0, n).map((h) => [h.sequence, when(h.receivedAt), `${h.artifact.name}@${h.artifact.version}`, h.state, h.reason]),
            )
          : '  (no reports)',
      );
    },
  },
  {
    path: ['devices', 'decommission'],
    summary: 'decommission a device: its next heartbeat offboards it; record and history stay',
    usage: 'FLEET/NAME | NAME --fleet FLEET --yes',
    options: { ...FLEET_OPTION, yes: { type: 'boolean', short: 'y', description: 'confirm: the device wipes its identity and stops for good' } },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const { fleet, name } = deviceRef(ctx, ctx.positionals[0]!);
      if (ctx.values.yes !== true) throw new UsageError(`decommissioning ${fleet}/${name} cannot be undone: add --yes to confirm`);
      const r = await ctx.api().post<{ fleet: string; name: string; decommissionedAt: string }>(`/devices${seg(fleet, name)}/decommission`);
      if (ctx.json) return printJson(ctx.out.stdout, r);
      line(ctx.out.stdout, `Decommissioned ${r.fleet}/${r.name} at ${when(r.decommissionedAt)}; it offboards at its next heartbeat.`);
    },
  },
  {
    path: ['enroll-token', 'create'],
    summary: 'mint an enrollment token for a fleet (printed once; only its hash is stored)',
    usage: '--fleet FLEET [--expires DURATION] [--uses N] [--device-name NAME]',
    options: {
      ...FLEET_OPTION,
      expires: { type: 'string', arg: 'DURATION', description: 'lifetime: seconds or 30m, 12h, 7d (default 1d)' },
      uses: { type: 'string', arg: 'N', description: 'how many devices may enroll with it (default 1)' },
      'device-name': { type: 'string', arg: 'NAME', description: 'only a device of this name may enroll with it' },
    },
    async run(ctx) {
      const expires = str(ctx.values, 'expires');
      const uses = intOpt(ctx.values, 'uses', { min: 1 });
      const deviceName = str(ctx.values, 'device-name');
      const body = {
        fleet: ctx.requireFleet(),
        ...(expires !== undefined ? { expiresInSeconds: seconds(expires, 'expires') } : {}),
        ...(uses !== undefined ? { uses } : {}),
        ...(deviceName !== undefined ? { deviceName } : {}),
      };
      const t = await ctx.api().post<{ id: string; token: string; fleet: string; expiresAt: string; uses: number; deviceName: string | null }>('/enrollment-tokens', body);
      if (ctx.json) return printJson(ctx.out.stdout, t);
      line(
        ctx.out.stdout,
        keyValues([
          ['token', t.token],
          ['id', t.id],
          ['fleet', t.fleet],
          ['uses', t.uses],
          ['device', t.deviceName ?? 'any name'],
          ['expires', when(t.expiresAt)],
        ]),
      );
      line(ctx.out.stderr, 'The token is shown only now: store it safely.');
    },
  },
  {
    path: ['enroll-token', 'ls'],
    summary: 'list enrollment tokens with their uses left and status (never the tokens themselves)',
    usage: '[--fleet FLEET] [--limit N] [--offset N] [--all]',
    options: { ...FLEET_OPTION, ...PAGING_OPTIONS },
    async run(ctx) {
      const page = await ctx.api().list<EnrollmentToken>('/enrollment-tokens', { fleet: ctx.fleet() }, paging(ctx.values));
      if (ctx.json) return printJson(ctx.out.stdout, page);
      if (page.items.length === 0) line(ctx.out.stdout, 'No enrollment tokens.');
      else
        line(
          ctx.out.stdout,
          table(
            ['ID', 'FLEET', 'STATUS', 'USES LEFT', 'DEVICE', 'EXPIRES', 'CREATED BY'],
            page.items.map((t) => [t.id, t.fleet, t.status, `${t.usesLeft}/${t.usesTotal}`, t.deviceName ?? 'any', when(t.expiresAt), t.createdBy]),
          ),
        );
      const footer = pageFooter(page);
      if (footer) line(ctx.out.stdout, footer);
    },
  },
  {
    path: ['enroll-token', 'revoke'],
    summary: 'revoke an enrollment token: it enrolls nothing from now on (devices it enrolled stay)',
    usage: 'ID',
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const t = await ctx.api().delete<EnrollmentToken>(`/enrollment-tokens${seg(ctx.positionals[0]!)}`);
      if (ctx.json) return printJson(ctx.out.stdout, t);
      line(ctx.out.stdout, `Revoked enrollment token ${t.id} (fleet ${t.fleet}); status ${t.status}.`);
    },
  },
];
