// The CPU of one mTLS handshake, each side in its own process (the storm suite's floor).
// Role "server": a node:tls server with the device API listener's options
// (server/src/device-api/tls-listener.ts: client certificate required and verified against the
// device CA, ALPN h2, TLS 1.2+). Role "client": N handshakes one after another, as grpc-js
// makes them (channel-credentials.js: tls.connect with a secure context holding the CA, the
// device key and certificate, ALPN h2, the server name checked), each closed once secure.
// With resume, every connection after the first offers the TLS 1.3 ticket of the previous one
// (tls.connect's `session`), which grpc-js never does; it says what resumption would save.
import tls from 'node:tls';
import { workerMain } from '../lib/workers.mjs';

let server;
let handshakes = 0;
let resumed = 0;
let resumedWithPeer = 0;
let cpuAt;

workerMain(async (msg) => {
  if (msg.type === 'serve') {
    server = tls.createServer({ key: msg.keyPem, cert: msg.certPem, ca: msg.caPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3' });
    server.on('secureConnection', (socket) => {
      handshakes += 1;
      if (socket.isSessionReused()) {
        resumed += 1;
        // A resumed session must still carry the device's verified certificate (identity).
        if (socket.authorized && socket.getPeerCertificate()?.raw) resumedWithPeer += 1;
      }
      // The client closes: a TLS 1.3 server writes its tickets after the handshake, and a
      // connection ended at once here would lose them.
      socket.on('error', () => undefined);
      socket.resume();
    });
    server.on('tlsClientError', () => undefined);
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    process.send({ type: 'listening', port: server.address().port });
  } else if (msg.type === 'mark') {
    cpuAt = process.cpuUsage();
    handshakes = resumed = resumedWithPeer = 0;
    process.send({ type: 'marked' });
  } else if (msg.type === 'stats') {
    const cpu = process.cpuUsage(cpuAt);
    process.send({ type: 'stats', handshakes, resumed, resumedWithPeer, cpuMs: (cpu.user + cpu.system) / 1000 });
  } else if (msg.type === 'connect') {
    const context = tls.createSecureContext({ ca: msg.caPem, key: msg.keyPem, cert: msg.certPem });
    let session;
    let reused = 0;
    const connectOnce = () =>
      new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: msg.port, secureContext: context, ALPNProtocols: ['h2'], ...(msg.resume && session ? { session } : {}) });
        // TLS 1.3 tickets arrive after the handshake: the first connection waits for one; later ones
        // offer it again (OpenSSL accepts a ticket more than once unless told otherwise).
        let secure = false;
        let ticket = !msg.resume || session !== undefined;
        const done = () => secure && ticket && (socket.end(), resolve());
        socket.once('session', (s) => {
          session = s;
          ticket = true;
          done();
        });
        socket.once('secureConnect', () => {
          if (!socket.authorized) return reject(new Error(`server not authorized: ${socket.authorizationError}`));
          if (socket.isSessionReused()) reused += 1;
          secure = true;
          done();
        });
        socket.on('error', reject);
        socket.resume();
      });
    if (msg.resume) await connectOnce(); // the first, full, handshake yields the first ticket
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    reused = 0;
    for (let i = 0; i < msg.count; i++) await connectOnce();
    const cpu = process.cpuUsage(cpu0);
    process.send({ type: 'connected', count: msg.count, reused, cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0 });
  }
});
