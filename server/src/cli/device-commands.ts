// device issue-cert and device decommission.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, ensurePrivateDirSync, writeFileAtomicSync } from '@meshanics/core/kit';
import { DEFAULT_DEVICE_CERT_DAYS } from '../config/defaults.js';
import { intOpt, print, required, requireFlags, UsageError, withDataDir, type Command } from './args.js';

export const DEVICE_COMMANDS: Command[] = [
  {
    name: 'device issue-cert',
    summary: 'generate a device key on the server and issue its certificate (tests, demos; devices normally enroll with a token)',
    usage: 'device issue-cert --fleet FLEET (--name NAME | --names A,B,...) --out DIR [options]',
    options: {
      fleet: { type: 'string' },
      name: { type: 'string' },
      names: { type: 'string' },
      out: { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean' },
    },
    help: [
      '  --fleet FLEET          fleet of the device (DNS label)',
      '  --name NAME            device name within the fleet (DNS label)',
      '  --names A,B,...        several devices in one go (simulators, demos): each gets DIR/<name>/',
      '  --out DIR              writes DIR/device.key (0600), device.crt, ca.crt, tuf-root.json',
      `  --days N               certificate validity in days (default ${DEFAULT_DEVICE_CERT_DAYS})`,
      '  --force                overwrite an existing DIR/device.key',
    ],
    async run(values, _positionals, command) {
      if (typeof values.names === 'string') {
        if (values.name !== undefined) throw new UsageError('give --name or --names, not both', command.name);
        requireFlags(values, command, ['fleet', 'out']);
        const names = values.names
          .split(',')
          .map((n) => n.trim())
          .filter((n) => n !== '');
        if (names.length === 0) throw new UsageError('--names lists no device', command.name);
        const fleet = required(values, 'fleet', command);
        const out = path.resolve(required(values, 'out', command));
        const days = intOpt(values, 'days', command, DEFAULT_DEVICE_CERT_DAYS);
        const { provisionDevice } = await import('../fleet/devices.js');
        const devices = await withDataDir(values, command, async (ctx) => {
          const issued = [];
          for (const name of names) {
            const dir = path.join(out, name);
            if (fs.existsSync(path.join(dir, 'device.key')) && values.force !== true) {
              throw new UsageError(`${path.join(dir, 'device.key')} exists; pass --force to replace it`, command.name);
            }
            const creds = await provisionDevice(ctx, { fleet, name, days, actor: 'operator:cli' });
            ensurePrivateDirSync(dir);
            writeFileAtomicSync(path.join(dir, 'device.key'), creds.keyPem, { mode: PRIVATE_FILE_MODE });
            writeFileAtomicSync(path.join(dir, 'device.crt'), creds.certPem, { mode: PUBLIC_FILE_MODE });
            writeFileAtomicSync(path.join(dir, 'ca.crt'), creds.caPem, { mode: PUBLIC_FILE_MODE });
            writeFileAtomicSync(path.join(dir, 'tuf-root.json'), creds.tufRootJson, { mode: PUBLIC_FILE_MODE });
            issued.push({ spiffeId: creds.spiffeId, fleet, name, serialNumber: creds.serialNumber, notAfter: creds.notAfter, dir });
          }
          return issued;
        });
        print({ devices });
        return;
      }
      requireFlags(values, command, ['fleet', 'name', 'out']);
      const fleet = required(values, 'fleet', command);
      const name = required(values, 'name', command);
      const out = path.resolve(required(values, 'out', command));
      const days = intOpt(values, 'days', command, DEFAULT_DEVICE_CERT_DAYS);
      const files = {
        key: path.join(out, 'device.key'),
        cert: path.join(out, 'device.crt'),
        ca: path.join(out, 'ca.crt'),
        tufRoot: path.join(out, 'tuf-root.json'),
      };
      if (fs.existsSync(files.key) && values.force !== true) {
        throw new UsageError(`${files.key} exists; pass --force to replace it`, command.name);
      }
      const { provisionDevice } = await import('../fleet/devices.js');
      const creds = await withDataDir(values, command, (ctx) => provisionDevice(ctx, { fleet, name, days, actor: 'operator:cli' }));
      ensurePrivateDirSync(out);
      writeFileAtomicSync(files.key, creds.keyPem, { mode: PRIVATE_FILE_MODE });
      writeFileAtomicSync(files.cert, creds.certPem, { mode: PUBLIC_FILE_MODE });
      writeFileAtomicSync(files.ca, creds.caPem, { mode: PUBLIC_FILE_MODE });
      writeFileAtomicSync(files.tufRoot, creds.tufRootJson, { mode: PUBLIC_FILE_MODE });
      print({
        spiffeId: creds.spiffeId,
        fleet,
        name,
        serialNumber: creds.serialNumber,
        notBefore: creds.notBefore,
        notAfter: creds.notAfter,
        files,
      });
    },
  },
  {
    name: 'device decommission',
    summary: 'decommission a device: its next heartbeat says offboarded, then every surface refuses it',
    usage: 'device decommission --fleet FLEET --name NAME',
    options: { fleet: { type: 'string' }, name: { type: 'string' } },
    help: ['  --fleet FLEET          fleet of the device', '  --name NAME            device name within the fleet'],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'name']);
      const fleet = required(values, 'fleet', command);
      const name = required(values, 'name', command);
      const { decommissionDevice } = await import('../fleet/devices.js');
      await withDataDir(values, command, (ctx) => decommissionDevice(ctx, { fleet, name, actor: 'operator:cli' }));
      print({ fleet, name, decommissioned: true });
    },
  },
];
