// Trusting the operator's CA (--ca-file, env MESHANICS_CA_FILE, or `caFile` in the config):
// a server with a certificate from a private CA is verified against it, never accepted blindly.
// fetch (Node's bundled undici) takes its connections from the global dispatcher; this
// process is one command, so replacing it for the whole process is what is wanted.
import * as fs from 'node:fs';
import * as tls from 'node:tls';
import { CliError, EXIT } from './errors.js';

export async function trustCaFile(file: string): Promise<void> {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read the CA file ${file}: ${(err as Error).message}`, EXIT.USAGE);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CliError(`${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, EXIT.USAGE);
  const { Agent, setGlobalDispatcher } = await import('undici');
  // The public roots stay trusted too: the CA file adds to them.
  setGlobalDispatcher(new Agent({ connect: { ca: [...tls.rootCertificates, pem] } }));
}
