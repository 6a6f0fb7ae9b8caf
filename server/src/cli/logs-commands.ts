// logs request | ls | download: thin wrappers over logs/requests.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PRIVATE_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { DEFAULT_LOG_MAX_BYTES, MAX_LOG_BYTES } from '../config/defaults.js';
import { intOpt, print, printFromDataDir, required, requireFlags, stringOpt, withDataDir, type Command } from './args.js';

export const LOGS_COMMANDS: Command[] = [
  {
    name: 'logs request',
    summary: 'ask a device for its logs; it receives the request with its next heartbeat',
    usage: 'logs request --fleet FLEET --device NAME [--since ISO] [--until ISO] [--max-bytes N]',
    options: { fleet: { type: 'string' }, device: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, 'max-bytes': { type: 'string' } },
    help: [
      '  --fleet FLEET          fleet of the device',
      '  --device NAME          device name',
      '  --since TIME           oldest entries wanted, RFC 3339 (default: unbounded)',
      '  --until TIME           newest entries wanted, RFC 3339 (default: unbounded)',
      `  --max-bytes N          size cap of the bundle (default ${DEFAULT_LOG_MAX_BYTES}, at most ${MAX_LOG_BYTES})`,
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'device']);
      const input = {
        fleet: required(values, 'fleet', command),
        device: required(values, 'device', command),
        since: stringOpt(values, 'since'),
        until: stringOpt(values, 'until'),
        maxBytes: intOpt(values, 'max-bytes', command, DEFAULT_LOG_MAX_BYTES),
        actor: 'operator:cli',
      };
      const { requestDeviceLogs } = await import('../logs/requests.js');
      await printFromDataDir(values, command, (ctx) => requestDeviceLogs(ctx, input));
    },
  },
  {
    name: 'logs ls',
    summary: 'list log requests: pending until the device uploads, then fulfilled with size and sha256',
    usage: 'logs ls [--fleet FLEET] [--device NAME]',
    options: { fleet: { type: 'string' }, device: { type: 'string' } },
    help: ['  --fleet FLEET          only requests for devices of this fleet', '  --device NAME          only requests for devices of this name'],
    async run(values, _positionals, command) {
      const filter = { fleet: stringOpt(values, 'fleet'), device: stringOpt(values, 'device') };
      const { listLogRequests } = await import('../logs/requests.js');
      print({ logRequests: await withDataDir(values, command, (ctx) => listLogRequests(ctx, filter)) });
    },
  },
  {
    name: 'logs download',
    summary: 'write the gzip bundle a device uploaded for a log request, byte for byte',
    usage: 'logs download ID --out FILE',
    options: { out: { type: 'string' } },
    help: ['  --out FILE             where to write the .gz (replaced atomically if it exists)'],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const out = path.resolve(required(values, 'out', command));
      const { getLogBundle } = await import('../logs/requests.js');
      const bundle = await withDataDir(values, command, async (ctx) => {
        const found = await getLogBundle(ctx, positionals[0]!);
        // Read while the data dir is open; bundles are capped at 16 MiB, so memory is fine.
        return { ...found, bytes: fs.readFileSync(found.path) };
      });
      writeFileAtomicSync(out, bundle.bytes, { mode: PRIVATE_FILE_MODE });
      print({ logRequestId: bundle.logRequestId, fleet: bundle.fleet, device: bundle.device, out, sizeBytes: bundle.sizeBytes, sha256: bundle.sha256 });
    },
  },
];
