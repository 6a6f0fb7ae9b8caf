// enroll-token create | ls | revoke: thin wrappers over enrollment/tokens.ts.
import { DEFAULT_ENROLLMENT_TOKEN_TTL_SECONDS } from '../config/defaults.js';
import { durationOpt, intOpt, print, printFromDataDir, required, stringOpt, withDataDir, type Command } from './args.js';

const ACTOR = 'operator:cli';

export const ENROLL_TOKEN_COMMANDS: Command[] = [
  {
    name: 'enroll-token create',
    summary: 'mint an enrollment token for a fleet (the token is printed once and never stored)',
    usage: 'enroll-token create --fleet FLEET [--expires-in 24h] [--uses 1] [--name NAME]',
    options: { fleet: { type: 'string' }, 'expires-in': { type: 'string' }, uses: { type: 'string' }, name: { type: 'string' } },
    help: [
      '  --fleet FLEET          fleet the enrolled devices join (DNS label)',
      `  --expires-in DURATION  e.g. 30m, 24h, 7d, 3600s (default ${DEFAULT_ENROLLMENT_TOKEN_TTL_SECONDS / 3600}h)`,
      '  --uses N               how many devices may enroll with it (default 1)',
      '  --name NAME            only a device of this name may enroll with it (then --uses must be 1)',
    ],
    async run(values, _positionals, command) {
      const fleet = required(values, 'fleet', command);
      const expiresInSeconds = durationOpt(values, 'expires-in', command);
      const uses = intOpt(values, 'uses', command, 1);
      const deviceName = stringOpt(values, 'name');
      const { createEnrollmentToken } = await import('../enrollment/tokens.js');
      await printFromDataDir(values, command, (ctx) => createEnrollmentToken(ctx, { fleet, expiresInSeconds, uses, deviceName, actor: ACTOR }));
    },
  },
  {
    name: 'enroll-token ls',
    summary: 'list enrollment tokens with their uses left and status (never the tokens themselves)',
    usage: 'enroll-token ls [--fleet FLEET]',
    options: { fleet: { type: 'string' } },
    help: ['  --fleet FLEET          only tokens of this fleet'],
    async run(values, _positionals, command) {
      const fleet = stringOpt(values, 'fleet');
      const { listEnrollmentTokens } = await import('../enrollment/tokens.js');
      print({ tokens: await withDataDir(values, command, (ctx) => listEnrollmentTokens(ctx, { fleet })) });
    },
  },
  {
    name: 'enroll-token revoke',
    summary: 'revoke an enrollment token: it enrolls nothing from now on (devices it enrolled stay)',
    usage: 'enroll-token revoke ID',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { revokeEnrollmentToken } = await import('../enrollment/tokens.js');
      await printFromDataDir(values, command, (ctx) => revokeEnrollmentToken(ctx, positionals[0]!, ACTOR));
    },
  },
];
