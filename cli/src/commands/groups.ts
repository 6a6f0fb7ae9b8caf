// groups create | ls | show: the static groups of devices a rollout targets.
import type { Group } from '../api-types.js';
import { seg } from '../client.js';
import { type Command, csv, FLEET_OPTION, PAGING_OPTIONS, paging, requiredStr } from '../command.js';
import { keyValues, line, pageFooter, printJson, table } from '../output.js';

export const GROUP_COMMANDS: Command[] = [
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
      else
        line(
          ctx.out.stdout,
          table(
            ['FLEET', 'NAME', 'DEVICES', 'UNRESOLVED'],
            page.items.map((g) => [g.fleet, g.name, g.devices.length, g.unresolved.join(',')]),
          ),
        );
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
      line(
        ctx.out.stdout,
        keyValues([
          ['group', `${g.fleet}/${g.name}`],
          ['devices', g.devices.join(', ')],
          ['unresolved', g.unresolved.join(', ')],
        ]),
      );
    },
  },
];
