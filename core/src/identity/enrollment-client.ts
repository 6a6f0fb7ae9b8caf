// Talks to the server's enrollment endpoint over HTTPS. The operator pins the server, by a
// CA file or by the sha256 fingerprint of a CA certificate in the chain the server presents:
// the token is a secret and must never be sent to anyone else.
import * as crypto from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import tls, { type DetailedPeerCertificate } from 'node:tls';
import { MeshError } from '../errors.js';

export interface EnrollmentResponse {
  fleet: string;
  name: string;
  spiffeId: string;
  certificate: string;
  caBundle: string;
  tufRoot: string;
  deviceApi: string;
  artifactServer: string;
  notBefore: string;
  notAfter: string;
}

export type ServerPin = { caPem: string | Buffer } | { caFingerprint: string };

export interface PostOptions {
  url: string;
  /** The CA the server must chain to (a CA file, or a resolved fingerprint pin). */
  ca: string | Buffer;
  body: unknown;
  /** Client credentials for renewal (authenticated by the current certificate). */
  clientCert?: { cert: string | Buffer; key: string | Buffer };
  timeoutMs?: number;
}

function normalizeFingerprint(fp: string): string {
  return fp
    .replace(/^sha256:/i, '')
    .replace(/:/g, '')
    .toLowerCase();
}

/**
 * Turns a fingerprint pin into a CA certificate without sending anything: a bare TLS
 * handshake fetches the chain the server presents, and the certificate whose sha256
 * fingerprint was pinned becomes the CA the real request is verified against by Node's
 * ordinary chain and host checks. The token therefore only ever travels to a verified server.
 */
export function resolveFingerprintPin(url: URL, fingerprint: string, timeoutMs = 10_000): Promise<string> {
  const pinned = normalizeFingerprint(fingerprint);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 443),
      servername: net.isIP(url.hostname) ? undefined : url.hostname,
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    socket.once('secureConnect', () => {
      let cur = socket.getPeerCertificate(true) as DetailedPeerCertificate | undefined;
      const seen = new Set<string>();
      let found: string | undefined;
      while (cur && cur.raw && !seen.has(cur.fingerprint256)) {
        seen.add(cur.fingerprint256);
        const cert = new crypto.X509Certificate(cur.raw);
        if (normalizeFingerprint(cert.fingerprint256) === pinned && cert.ca) found = cert.toString();
        cur = cur.issuerCertificate;
      }
      socket.destroy();
      if (found) resolve(found);
      else reject(new MeshError('MESH_ERR_ENROLL_REFUSED', `no CA certificate in the chain ${url.host} presents matches the pinned fingerprint`));
    });
    socket.once('timeout', () => socket.destroy(new Error(`no TLS answer from ${url.host}`)));
    socket.once('error', (err: Error) => reject(new MeshError('MESH_ERR_ENROLL_REFUSED', `cannot reach ${url.host}: ${err.message}`, { cause: err })));
  });
}

export function postJson<T>(options: PostOptions): Promise<T> {
  const url = new URL(options.url);
  const body = Buffer.from(JSON.stringify(options.body));
  return new Promise<T>((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': body.length },
        agent: false,
        ca: options.ca,
        ...(options.clientCert ? { cert: options.clientCert.cert, key: options.clientCert.key } : {}),
        timeout: options.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = { error: text.slice(0, 200) };
          }
          if (res.statusCode === 200) return resolve(parsed as T);
          const { error, code } = (parsed ?? {}) as { error?: string; code?: string };
          reject(new MeshError('MESH_ERR_ENROLL_REFUSED', `server refused (HTTP ${res.statusCode}${code ? ` ${code}` : ''}): ${error ?? 'no reason given'}`));
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within ${(options.timeoutMs ?? 30_000) / 1000}s`)));
    req.on('error', (err) => reject(err instanceof MeshError ? err : new MeshError('MESH_ERR_ENROLL_REFUSED', `cannot reach ${url.origin}: ${err.message}`, { cause: err })));
    req.end(body);
  });
}
