import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isDnsLabel } from '../contract/identity.js';
import { MeshError } from '../errors.js';
import { generateKeyAndCsr } from '../identity/csr.js';
import { postJson, resolveFingerprintPin, type EnrollmentResponse } from '../identity/enrollment-client.js';
import { saveEnrollment } from '../identity/identity-store.js';
import { EXIT, UsageError } from './usage.js';

export async function enrollCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      server: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      'ca-file': { type: 'string' },
      'ca-fingerprint': { type: 'string' },
      'data-dir': { type: 'string' },
      force: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) throw new UsageError('');
  const server = values.server ?? env.MESHANICS_ENROLL_SERVER;
  const token = values.token ?? env.MESHANICS_ENROLL_TOKEN;
  const name = values.name;
  const missing = [
    ['--server', server],
    ['--token', token],
    ['--name', name],
  ].filter(([, v]) => !v);
  if (missing.length > 0) throw new UsageError(`missing ${missing.map(([f]) => f).join(', ')}`);
  if (!values['ca-file'] === !values['ca-fingerprint']) {
    throw new UsageError('pin the server with exactly one of --ca-file or --ca-fingerprint: the token must only ever reach your server');
  }
  if (!isDnsLabel(name!)) throw new UsageError(`--name "${name}" must be a DNS label (lowercase letters, digits and "-", at most 63)`);
  let url: URL;
  try {
    url = new URL(server!);
  } catch {
    throw new UsageError(`--server "${server}" is not a URL`);
  }
  if (url.protocol !== 'https:') throw new UsageError('--server must be an https:// URL');
  const dataDir = path.resolve(values['data-dir'] ?? env.MESHANICS_DATA_DIR ?? '/var/lib/meshanics');

  const ca = values['ca-file']
    ? await fs.readFile(values['ca-file']).catch((err: Error) => {
        throw new MeshError('MESH_ERR_CONFIG_INVALID', `cannot read --ca-file: ${err.message}`);
      })
    : await resolveFingerprintPin(url, values['ca-fingerprint']!);
  const { privateKeyPem, csrPem } = await generateKeyAndCsr(name!);
  const response = await postJson<EnrollmentResponse>({
    url: new URL('/enroll/v1/enroll', url).toString(),
    ca,
    body: { token, name, csr: csrPem },
  });
  const identity = await saveEnrollment(dataDir, response, privateKeyPem, url.origin, { force: values.force ?? false });
  process.stdout.write(
    `${JSON.stringify({
      enrolled: true,
      fleet: response.fleet,
      name: response.name,
      spiffeId: response.spiffeId,
      notAfter: response.notAfter,
      deviceApi: response.deviceApi,
      artifactServer: response.artifactServer,
      dataDir,
      certificate: identity.certPath,
    })}\n`,
  );
  return EXIT.OK;
}
