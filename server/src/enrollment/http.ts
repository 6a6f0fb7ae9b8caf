// The enrollment endpoint: HTTPS on its own listener, JSON in and out.
//   POST /enroll/v1/enroll  {token, name, csr}   anyone holding a token
//   POST /enroll/v1/renew   {csr}                a device, by its current client certificate
// TLS asks for a client certificate but does not require one: an enrolling device has none
// yet. Renewal then insists that TLS verified one against the device CA.
import * as https from 'node:https';
import type * as http from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { MeshanicsContext } from '../config/data-dir.js';
import { httpStatusFor, MeshError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import type { CertificateValidity } from '../pki/device-certificate.js';
import { enrollDevice, renewDeviceCertificate, type EnrollmentBundle } from './enroll.js';

export const ENROLL_PATH = '/enroll/v1/enroll';
export const RENEW_PATH = '/enroll/v1/renew';
/** A CSR is well under 2 KiB; anything near this is not a real agent. */
export const MAX_ENROLL_BODY_BYTES = 64 * 1024;

/** Where enrolled devices connect: told to them in every enrollment and renewal answer. */
export interface DeviceEndpoints {
  /** host:port of the device gRPC API. */
  deviceApi: string;
  /** https://host:port of the artifact server. */
  artifactServer: string;
}

export type EnrollmentResponse = EnrollmentBundle & DeviceEndpoints;

export interface EnrollmentServerOptions {
  ctx: MeshanicsContext;
  endpoints: DeviceEndpoints;
  validity: CertificateValidity;
  logger: Logger;
  caPem: string;
  keyPem: string;
  certPem: string;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_ENROLL_BODY_BYTES) {
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ENROLL_BODY_BYTES) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function tooLarge(): MeshError {
  return new MeshError('MESH_ERR_ENROLL_BODY_TOO_LARGE', `request body exceeds ${MAX_ENROLL_BODY_BYTES} bytes`);
}

/** The body as an object whose listed fields are all strings. */
function parseFields<K extends string>(body: Buffer, fields: readonly K[]): Record<K, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new MeshError('MESH_ERR_ENROLL_BAD_REQUEST', 'request body must be a JSON object');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new MeshError('MESH_ERR_ENROLL_BAD_REQUEST', 'request body must be a JSON object');
  }
  const record = parsed as Record<string, unknown>;
  const wrong = fields.filter((f) => typeof record[f] !== 'string');
  if (wrong.length > 0) {
    throw new MeshError('MESH_ERR_ENROLL_BAD_REQUEST', `request body needs string field(s): ${wrong.join(', ')}`);
  }
  return Object.fromEntries(fields.map((f) => [f, record[f]])) as Record<K, string>;
}

/** The TLS-verified client certificate (DER), or a 401 saying why there is none. */
function verifiedClientCertificate(socket: TLSSocket): Buffer {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.raw) {
    throw new MeshError('MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED', "renewal requires the device's current client certificate");
  }
  if (!socket.authorized) {
    // Node sets the OpenSSL code here (e.g. CERT_HAS_EXPIRED), a string despite its typing.
    // An expired certificate cannot renew: the device must enroll again.
    const error = socket.authorizationError as unknown;
    const reason = typeof error === 'string' ? error : error instanceof Error ? error.message : 'not verified';
    throw new MeshError('MESH_ERR_ENROLL_CLIENT_CERT_REQUIRED', `client certificate rejected (${reason}); an expired or foreign certificate cannot renew, enroll again`);
  }
  return cert.raw;
}

export function createEnrollmentRequestHandler(options: EnrollmentServerOptions): http.RequestListener {
  const { ctx, logger } = options;

  async function handle(req: http.IncomingMessage): Promise<EnrollmentResponse> {
    const route = (req.url ?? '').split('?')[0];
    if (route !== ENROLL_PATH && route !== RENEW_PATH) throw new MeshError('MESH_ERR_ENROLL_NOT_FOUND', `no endpoint ${clipPath(route)}`);
    if (req.method !== 'POST') throw new MeshError('MESH_ERR_ENROLL_METHOD_NOT_ALLOWED', `${route} accepts POST only`);
    const socket = req.socket as TLSSocket;
    const origin = socket.remoteAddress ?? 'unknown';
    const common = { validity: options.validity, origin };
    if (route === ENROLL_PATH) {
      const body = parseFields(await readBody(req), ['token', 'name', 'csr'] as const);
      const enrolled = await enrollDevice(ctx, { token: body.token, name: body.name, csrPem: body.csr, ...common });
      return { ...enrolled, ...options.endpoints };
    }
    // Authenticate before reading the body: an unauthenticated caller gets nothing parsed.
    const certificateDer = verifiedClientCertificate(socket);
    const body = parseFields(await readBody(req), ['csr'] as const);
    const renewed = await renewDeviceCertificate(ctx, { certificateDer, csrPem: body.csr, ...common });
    return { ...renewed, ...options.endpoints };
  }

  return (req, res) => {
    handle(req).then(
      (result) => send(res, 200, result),
      (err: unknown) => {
        if (err instanceof MeshError) {
          const status = httpStatusFor(err.kind);
          // Refusals of the checks themselves were already logged (and audited) by enroll.ts.
          if (status >= 500) logger.error({ err, url: req.url }, 'enrollment request failed');
          else logger.debug({ code: err.code, url: req.url, origin: req.socket.remoteAddress }, 'enrollment request refused');
          const headers: http.OutgoingHttpHeaders = err.code === 'MESH_ERR_ENROLL_METHOD_NOT_ALLOWED' ? { Allow: 'POST' } : {};
          // An unread (too large) body would otherwise be parsed as the next request.
          if (err.code === 'MESH_ERR_ENROLL_BODY_TOO_LARGE') headers.Connection = 'close';
          send(res, status, { error: err.message, code: err.code }, headers);
          return;
        }
        logger.error({ err, url: req.url }, 'enrollment request failed');
        send(res, 500, { error: 'internal error', code: 'MESH_ERR_INTERNAL' });
      },
    );
  };
}

function clipPath(p: string | undefined): string {
  const s = p ?? '';
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers }).end(text);
}

export function createEnrollmentServer(options: EnrollmentServerOptions): https.Server {
  const server = https.createServer(
    {
      key: options.keyPem,
      cert: options.certPem,
      ca: options.caPem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      // Bounded so that a slow client cannot hold connections open indefinitely.
      requestTimeout: 30_000,
      headersTimeout: 10_000,
    },
    createEnrollmentRequestHandler(options),
  );
  server.on('tlsClientError', (err: Error) => options.logger.debug({ err: err.message }, 'enrollment TLS handshake failed'));
  return server;
}
