// group and rollout: thin wrappers over groups.ts and rollouts/ (the REST API calls the same functions).
import {
  artifactRefOpt,
  intOpt,
  jsonOpt,
  printFromDataDir,
  PROBE_HELP,
  PROBE_OPTIONS,
  probeOpt,
  required,
  requireFlags,
  stringOpt,
  UsageError,
  type Command,
  type Values,
} from './args.js';

const ACTOR = 'operator:cli';

function deviceList(values: Values, command: Command): string[] {
  const raw = required(values, 'devices', command);
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export const GROUP_COMMANDS: Command[] = [
  {
    name: 'group create',
    summary: 'create a static group of devices (names that do not resolve are reported, not dropped)',
    usage: 'group create --fleet FLEET --name NAME --devices a,b,c',
    options: { fleet: { type: 'string' }, name: { type: 'string' }, devices: { type: 'string' } },
    help: ['  --fleet FLEET          fleet of the devices', '  --name NAME            group name', '  --devices a,b,c        device names, comma-separated'],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'name', 'devices']);
      const input = { fleet: required(values, 'fleet', command), name: required(values, 'name', command), devices: deviceList(values, command), actor: ACTOR };
      const { createGroup } = await import('../fleet/groups.js');
      await printFromDataDir(values, command, (ctx) => createGroup(ctx, input));
    },
  },
  {
    name: 'group set-devices',
    summary: "replace a group's device names",
    usage: 'group set-devices --fleet FLEET --name NAME --devices a,b,c',
    options: { fleet: { type: 'string' }, name: { type: 'string' }, devices: { type: 'string' } },
    help: ['  --fleet FLEET          fleet of the group', '  --name NAME            group name', '  --devices a,b,c        device names, comma-separated'],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'name', 'devices']);
      const fleet = required(values, 'fleet', command);
      const name = required(values, 'name', command);
      const devices = deviceList(values, command);
      const { setGroupDevices } = await import('../fleet/groups.js');
      await printFromDataDir(values, command, (ctx) => setGroupDevices(ctx, fleet, name, devices, ACTOR));
    },
  },
  {
    name: 'group show',
    summary: 'show a group with its resolved and unresolved device names',
    usage: 'group show --fleet FLEET --name NAME',
    options: { fleet: { type: 'string' }, name: { type: 'string' } },
    help: ['  --fleet FLEET          fleet of the group', '  --name NAME            group name'],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'name']);
      const fleet = required(values, 'fleet', command);
      const name = required(values, 'name', command);
      const { getGroup } = await import('../fleet/groups.js');
      await printFromDataDir(values, command, (ctx) => getGroup(ctx, fleet, name));
    },
  },
  {
    name: 'group ls',
    summary: 'list groups',
    usage: 'group ls [--fleet FLEET]',
    options: { fleet: { type: 'string' } },
    help: ['  --fleet FLEET          only this fleet'],
    async run(values, _positionals, command) {
      const fleet = stringOpt(values, 'fleet');
      const { listGroups } = await import('../fleet/groups.js');
      await printFromDataDir(values, command, (ctx) => listGroups(ctx, fleet === undefined ? {} : { fleet }));
    },
  },
];

export const ROLLOUT_COMMANDS: Command[] = [
  {
    name: 'rollout create',
    summary: 'roll an artifact version out to a group in waves (the first wave starts at once)',
    usage: 'rollout create --fleet FLEET --artifact NAME@VERSION --group GROUP --probe-type TYPE --probe-spec JSON [options]',
    options: {
      fleet: { type: 'string' },
      artifact: { type: 'string' },
      group: { type: 'string' },
      ...PROBE_OPTIONS,
      strategy: { type: 'string' },
    },
    help: [
      '  --fleet FLEET               fleet of the group',
      '  --artifact NAME@VERSION     published artifact version',
      '  --group GROUP               static group of the fleet',
      ...PROBE_HELP,
      '  --strategy JSON             {"waves":[{"percent":10,"approval":"auto"},{"percent":100,"approval":"manual"}],"max_failure_rate":0}',
      '                              (default: one wave of 100%, the first failure halts)',
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'artifact', 'group', 'probe-type', 'probe-spec']);
      const artifact = artifactRefOpt(values, command);
      const strategy = jsonOpt(values, 'strategy', command);
      const input = {
        fleet: required(values, 'fleet', command),
        artifact,
        group: required(values, 'group', command),
        probe: probeOpt(values, command),
        ...(strategy !== undefined ? { strategy: JSON.parse(strategy) as unknown } : {}),
        actor: ACTOR,
      };
      const { createRollout } = await import('../rollouts/service.js');
      await printFromDataDir(values, command, (ctx) => createRollout(ctx, input));
    },
  },
  {
    name: 'rollout show',
    summary: 'show a rollout: status, waves, counts and every device',
    usage: 'rollout show ID',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { getRollout } = await import('../rollouts/service.js');
      await printFromDataDir(values, command, (ctx) => getRollout(ctx, positionals[0]!));
    },
  },
  {
    name: 'rollout ls',
    summary: 'list rollouts, newest first',
    usage: 'rollout ls [--fleet FLEET] [--status STATUS] [--limit N] [--offset N]',
    options: { fleet: { type: 'string' }, status: { type: 'string' }, limit: { type: 'string' }, offset: { type: 'string' } },
    help: [
      '  --fleet FLEET          only this fleet',
      '  --status STATUS        running|waiting_approval|halted|completed|aborted',
      '  --limit N              1-200 (default 50)',
      '  --offset N             (default 0)',
    ],
    async run(values, _positionals, command) {
      const fleet = stringOpt(values, 'fleet');
      const status = stringOpt(values, 'status');
      const filter = {
        ...(fleet !== undefined ? { fleet } : {}),
        ...(status !== undefined ? { status: status as 'running' } : {}),
        limit: intOpt(values, 'limit', command, 50),
        offset: intOpt(values, 'offset', command, 0),
      };
      const { listRollouts } = await import('../rollouts/service.js');
      await printFromDataDir(values, command, (ctx) => listRollouts(ctx, filter));
    },
  },
  {
    name: 'rollout approve',
    summary: 'start the wave that waits for approval',
    usage: 'rollout approve ID',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { approveRollout } = await import('../rollouts/service.js');
      await printFromDataDir(values, command, (ctx) => approveRollout(ctx, positionals[0]!, ACTOR));
    },
  },
  {
    name: 'rollout resume',
    summary: 'resume a halted rollout (the failures so far are acknowledged; only new ones halt it again)',
    usage: 'rollout resume ID',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { resumeRollout } = await import('../rollouts/service.js');
      await printFromDataDir(values, command, (ctx) => resumeRollout(ctx, positionals[0]!, ACTOR));
    },
  },
  {
    name: 'rollout abort',
    summary: 'abort a running or halted rollout; --policy revert sends updated devices back to their previous version',
    usage: 'rollout abort ID [--policy keep|revert]',
    options: { policy: { type: 'string' } },
    help: ['  --policy keep|revert   keep (default): withdraw what has not started; revert: also send updated devices back'],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const policy = stringOpt(values, 'policy') ?? 'keep';
      if (policy !== 'keep' && policy !== 'revert') throw new UsageError(`--policy must be keep or revert, got "${policy}"`, command.name);
      const { abortRollout } = await import('../rollouts/service.js');
      await printFromDataDir(values, command, (ctx) => abortRollout(ctx, positionals[0]!, { policy }, ACTOR));
    },
  },
];
