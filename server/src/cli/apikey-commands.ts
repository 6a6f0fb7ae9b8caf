// apikey create | ls | revoke: bootstrap and manage operator REST API keys (api/keys.ts).
import { print, printFromDataDir, required, requireFlags, withDataDir, type Command } from './args.js';

const ACTOR = 'operator:cli';

export const APIKEY_COMMANDS: Command[] = [
  {
    name: 'apikey create',
    summary: 'create an operator REST API key (printed once; only its sha256 is stored)',
    usage: 'apikey create --name NAME --fleet FLEET|* --permissions AREA.LEVEL,... [--approve]',
    options: { name: { type: 'string' }, fleet: { type: 'string' }, permissions: { type: 'string' }, approve: { type: 'boolean' } },
    help: [
      '  --name NAME            unique name of the key; the audit trail names it as the actor',
      '  --fleet FLEET|*        the one fleet the key may see, or * for every fleet',
      '  --permissions LIST     comma-separated AREA.LEVEL: areas devices, artifacts, rollouts, enrollment, audit, logs;',
      '                         levels read < write < manage (a higher level implies the lower ones)',
      '  --approve              the right to approve a manual wave and resume a halted rollout',
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['name', 'fleet', 'permissions']);
      const input = {
        name: required(values, 'name', command),
        fleet: required(values, 'fleet', command),
        permissions: required(values, 'permissions', command).split(','),
        approve: values.approve === true,
        actor: ACTOR,
      };
      const { createApiKey } = await import('../api/keys.js');
      await printFromDataDir(values, command, (ctx) => createApiKey(ctx, input));
    },
  },
  {
    name: 'apikey ls',
    summary: 'list API keys with their fleet, permissions and status (never the keys themselves)',
    usage: 'apikey ls',
    options: {},
    help: [],
    async run(values, _positionals, command) {
      const { listApiKeys } = await import('../api/keys.js');
      print({ keys: await withDataDir(values, command, (ctx) => listApiKeys(ctx)) });
    },
  },
  {
    name: 'apikey revoke',
    summary: 'revoke an API key: every call with it is refused (401) from now on',
    usage: 'apikey revoke ID',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { revokeApiKey } = await import('../api/keys.js');
      await printFromDataDir(values, command, (ctx) => revokeApiKey(ctx, positionals[0]!, ACTOR));
    },
  },
];
