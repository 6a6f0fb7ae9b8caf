// How the operator REST API meets the network (issue 25, docs/security.md): HTTPS with the
// operator's certificate, or plain HTTP only on loopback unless the operator says otherwise
// (--api-insecure-http) — an API key must not cross a network in clear by default.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { MeshError } from '../errors.js';

export interface ApiTlsFiles {
  /** PEM: the certificate, then any intermediates. */
  certFile: string;
  keyFile: string;
}

export interface ApiTlsMaterial {
  cert: string;
  key: string;
  /** For the log: which certificate is being served. */
  subject: string;
  notAfter: string;
  fingerprint256: string;
}

/** Literal loopback addresses and `localhost`; any other name or address counts as a network. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && mapped[1]!.startsWith('127.');
}

/** Refuses plain HTTP on a non-loopback address before anything is bound. */
export function checkApiTransport(listen: { host: string }, options: { tls: boolean; insecureHttp: boolean }): void {
  if (options.tls || options.insecureHttp || isLoopbackHost(listen.host)) return;
  throw new MeshError(
    'MESH_ERR_CONFIG_INVALID',
    `refusing to serve the REST API over plain HTTP on ${listen.host}, which is not a loopback address: API keys would cross the network in clear. ` +
      'Give --api-tls-cert and --api-tls-key (env MESHANICS_API_TLS_CERT, MESHANICS_API_TLS_KEY), listen on 127.0.0.1, ' +
      'or, behind a TLS-terminating proxy on a trusted network, --api-insecure-http',
  );
}

/** Reads and checks the pair: both parse, and the key belongs to the certificate. */
export function readApiTls(files: ApiTlsFiles): ApiTlsMaterial {
  let cert: string;
  let key: string;
  try {
    cert = fs.readFileSync(files.certFile, 'utf8');
    key = fs.readFileSync(files.keyFile, 'utf8');
  } catch (err) {
    throw new MeshError('MESH_ERR_API_TLS_INVALID', `cannot read the REST API certificate or key: ${(err as Error).message}`, { cause: err });
  }
  let leaf: crypto.X509Certificate;
  try {
    // Throws on an unparseable PEM or a key that does not match the certificate.
    tls.createSecureContext({ cert, key });
    leaf = new crypto.X509Certificate(cert);
  } catch (err) {
    throw new MeshError('MESH_ERR_API_TLS_INVALID', `${files.certFile} and ${files.keyFile} are not a usable certificate and key: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { cert, key, subject: leaf.subject.replace(/\n/g, ', '), notAfter: new Date(leaf.validTo).toISOString(), fingerprint256: leaf.fingerprint256 };
}
