// The container's HEALTHCHECK: GET /readyz on this server's own REST listener, exit 0 when it
// answers 200. Run by the runtime inside the container, so it reads the same MESHANICS_*
// environment `serve` was started with and needs no shell or curl in the image.
import http from 'node:http';
import https from 'node:https';

const TIMEOUT_MS = 4_000;

function target(): URL {
  const listen = process.env.MESHANICS_API_LISTEN;
  if (!listen) throw new Error('MESHANICS_API_LISTEN is not set: the REST API (and /readyz) is off');
  const at = listen.lastIndexOf(':');
  let host = listen.slice(0, at);
  const port = listen.slice(at + 1);
  // A wildcard bind is reached on loopback from inside the container.
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '[::]' || host === '::') host = '[::1]';
  const scheme = process.env.MESHANICS_API_TLS_CERT ? 'https' : 'http';
  return new URL(`${scheme}://${host}:${port}/readyz`);
}

function check(url: URL): Promise<number> {
  return new Promise((resolve, reject) => {
    // The probe asks its own process over loopback; the certificate names the operator's
    // public host, not 127.0.0.1, so its name is not checked here (clients check it).
    const get = url.protocol === 'https:' ? https.get : http.get;
    const req = get(url, { timeout: TIMEOUT_MS, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

try {
  const url = target();
  const status = await check(url);
  if (status !== 200) {
    process.stderr.write(`${url.href} answered ${status}\n`);
    process.exit(1);
  }
} catch (err) {
  process.stderr.write(`healthcheck: ${(err as Error).message}\n`);
  process.exit(1);
}
