// Provisions a slice of simulated devices into a server data dir with the server's own
// operator function (provisionDevice: key pair, certificate from the device CA, device row,
// audit event) and writes their credentials as JSON for the load generators.
// Args: DATA_DIR FLEET PREFIX FROM COUNT OUT_FILE; MESHANICS_DATABASE_URL when the data dir's
// database is in PostgreSQL (as for every server command).
import { writeFileSync } from 'node:fs';
import { openDataDir, provisionDevice } from '@meshanics/server';

const [dataDir, fleet, prefix, from, count, outFile] = process.argv.slice(2);
const databaseUrl = process.env.MESHANICS_DATABASE_URL;
const ctx = await openDataDir({ dataDir, ...(databaseUrl ? { databaseUrl } : {}) });
const devices = [];
try {
  const first = Number(from);
  const n = Number(count);
  for (let i = first; i < first + n; i++) {
    const name = `${prefix}${String(i).padStart(5, '0')}`;
    const creds = await provisionDevice(ctx, { fleet, name, actor: 'bench' });
    devices.push({ fleet, name, keyPem: creds.keyPem, certPem: creds.certPem });
    if ((i - first + 1) % 100 === 0) process.send?.({ type: 'progress', done: i - first + 1 });
  }
} finally {
  await ctx.close();
}
writeFileSync(outFile, JSON.stringify(devices));
process.send?.({ type: 'done', count: devices.length });
process.disconnect?.();
