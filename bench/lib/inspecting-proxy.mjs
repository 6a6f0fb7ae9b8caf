// An HTTPS proxy between the agent and the artifact server that sees the requests: it
// terminates the agent's mTLS with the server's own certificate (so the agent's pinned CA
// accepts it) and opens its own mTLS connection upstream with the same device's
// certificate (so the server authorizes the same device). It records each request's Range
// header, the status and Content-Range of the answer, and counts the body bytes handed to
// the agent's socket. Optionally throttles, so a small download can be interrupted midway.
import https from 'node:https';
import { once } from 'node:events';

function drainOrClose(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export async function startInspectingProxy({ upstream, serverTls, deviceTls, rateBytesPerSec }) {
  const upstreamAgent = new https.Agent({ ca: deviceTls.caPem, cert: deviceTls.certPem, key: deviceTls.keyPem, keepAlive: true });
  const requests = [];
  const server = https.createServer({ key: serverTls.keyPem, cert: serverTls.certPem, ca: serverTls.caPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const entry = {
      method: req.method,
      url: req.url,
      range: req.headers.range ?? null,
      status: null,
      contentRange: null,
      bodyBytes: 0,
      done: false,
      aborted: false,
      at: Date.now(),
    };
    requests.push(entry);
    const headers = {};
    for (const h of ['range', 'accept', 'accept-encoding', 'user-agent']) if (req.headers[h]) headers[h] = req.headers[h];
    const up = https.request(new URL(req.url, upstream), { method: req.method, headers, agent: upstreamAgent });
    res.on('close', () => {
      if (!entry.done) {
        entry.aborted = true;
        up.destroy();
      }
      entry.closedAt = Date.now();
    });
    up.on('error', () => res.destroy());
    // Copies the answer to the agent; ends in a catch of its own, so it never rejects.
    const relay = async (upRes) => {
      entry.status = upRes.statusCode;
      entry.contentRange = upRes.headers['content-range'] ?? null;
      const pass = {};
      for (const h of ['content-type', 'content-length', 'content-range', 'accept-ranges', 'cache-control']) if (upRes.headers[h]) pass[h] = upRes.headers[h];
      const t0 = performance.now();
      try {
        res.writeHead(upRes.statusCode, pass);
        for await (const chunk of upRes) {
          if (res.destroyed) break;
          entry.bodyBytes += chunk.length;
          if (!res.write(chunk)) await drainOrClose(res);
          if (rateBytesPerSec) {
            const ahead = (entry.bodyBytes / rateBytesPerSec) * 1000 - (performance.now() - t0);
            if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
          }
        }
        if (!res.destroyed) {
          entry.done = true;
          res.end();
        }
      } catch {
        res.destroy();
      }
    };
    // Fire-and-forget: an event listener's result is ignored, and relay() never rejects.
    up.on('response', (upRes) => void relay(upRes));
    req.pipe(up);
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `https://127.0.0.1:${server.address().port}`,
    requests,
    async close() {
      server.closeAllConnections();
      server.close();
      upstreamAgent.destroy();
    },
  };
}
