// login, logout, whoami
import * as path from 'node:path';
import type { WhoAmI } from '../api-types.js';
import { ApiClient } from '../client.js';
import { type Command, str } from '../command.js';
import { normalizeUrl, readConfigFile, writeConfigFile } from '../config.js';
import { ApiError, CliError, EXIT, UsageError } from '../errors.js';
import { keyValues, line, printJson } from '../output.js';

/** Reads the key from stdin: hidden prompt on a terminal, the first line otherwise. */
async function readKey(prompt: NodeJS.WritableStream): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY) {
    prompt.write('API key: ');
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    return new Promise((resolve, reject) => {
      let key = '';
      const onData = (chunk: string) => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n') {
            done();
            prompt.write('\n');
            resolve(key.trim());
            return;
          }
          if (ch === '\u0003') {
            done();
            prompt.write('\n');
            reject(new CliError('interrupted', 130));
            return;
          }
          if (ch === '\u007f' || ch === '\b') key = key.slice(0, -1);
          else key += ch;
        }
      };
      const done = () => {
        stdin.off('data', onData);
        stdin.setRawMode(false);
        stdin.pause();
      };
      stdin.on('data', onData);
    });
  }
  let text = '';
  for await (const chunk of stdin) text += String(chunk);
  return (text.split('\n')[0] ?? '').trim();
}

export const SESSION_COMMANDS: Command[] = [
  {
    path: ['login'],
    summary: 'save the server URL and an API key (checked first) in the config file, mode 0600',
    usage: '--server URL [--api-key KEY] [--fleet FLEET]',
    description: [
      'The key is read from --api-key, else env MESHANICS_API_KEY, else stdin (a hidden prompt on a terminal).',
      'It is verified with GET /api/v1/whoami before anything is saved. A key bound to one fleet makes that',
      'fleet the default --fleet.',
    ],
    options: {
      'api-key': { type: 'string', arg: 'KEY', description: 'the API key (visible in the process list: prefer stdin or the prompt)' },
      fleet: { type: 'string', arg: 'FLEET', description: 'default --fleet for later commands' },
    },
    examples: ['meshanics login --server http://127.0.0.1:7480', 'echo "$KEY" | meshanics login --server https://meshanics.example.com'],
    async run(ctx) {
      const server = str(ctx.values, 'server') ?? process.env.MESHANICS_API_URL ?? readConfigFile(ctx.config.file).url;
      if (!server) throw new UsageError('--server URL is required: meshanics login --server URL');
      const url = normalizeUrl(server);
      const key = str(ctx.values, 'api-key') ?? (process.env.MESHANICS_API_KEY || undefined) ?? (await readKey(ctx.out.stderr));
      if (!key) throw new UsageError('no API key given (--api-key, env MESHANICS_API_KEY, or stdin)');
      let me: WhoAmI;
      try {
        me = await new ApiClient(url, key).get<WhoAmI>('/whoami');
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) throw new CliError(`login refused by ${url}: ${err.message}`, EXIT.AUTH);
        throw err;
      }
      const fleet = str(ctx.values, 'fleet') ?? (me.fleet !== '*' ? me.fleet : undefined);
      // An explicit CA is kept as an absolute path, so later commands find it from anywhere.
      const caFile = ctx.config.caFile !== undefined ? path.resolve(ctx.config.caFile) : undefined;
      writeConfigFile(ctx.config.file, { url, apiKey: key, ...(fleet ? { fleet } : {}), ...(caFile ? { caFile } : {}) });
      if (ctx.json) printJson(ctx.out.stdout, { url, configFile: ctx.config.file, ...me, defaultFleet: fleet ?? null });
      else line(ctx.out.stdout, `Logged in to ${url} as ${me.name} (fleet ${me.fleet}); saved to ${ctx.config.file}`);
    },
  },
  {
    path: ['logout'],
    summary: 'remove the saved API key from the config file (the key itself stays valid on the server)',
    usage: '',
    async run(ctx) {
      const stored = readConfigFile(ctx.config.file);
      delete stored.apiKey;
      writeConfigFile(ctx.config.file, stored);
      if (ctx.json) printJson(ctx.out.stdout, { configFile: ctx.config.file, loggedOut: true });
      else line(ctx.out.stdout, `Removed the API key from ${ctx.config.file}`);
    },
  },
  {
    path: ['whoami'],
    summary: 'show the key in use: its name, fleet, permissions and approve right',
    usage: '',
    async run(ctx) {
      const api = ctx.api();
      const me = await api.get<WhoAmI>('/whoami');
      if (ctx.json) return printJson(ctx.out.stdout, me);
      line(
        ctx.out.stdout,
        keyValues([
          ['server', api.baseUrl],
          ['key', me.name],
          ['fleet', me.fleet],
          ['permissions', me.permissions.join(', ')],
          ['approve', me.approve ? 'yes' : 'no'],
        ]),
      );
    },
  },
];
