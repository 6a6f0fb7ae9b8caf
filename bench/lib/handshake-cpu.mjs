// The CPU of one mTLS handshake on the server and on the device, each side in its own process
// (workers/handshake-cpu.mjs), over `count` sequential handshakes on 127.0.0.1: full ones as
// grpc-js makes them, and resumed ones (TLS 1.3 ticket offered), which grpc-js does not make.
import os from 'node:os';
import { workerPath } from './fixtures.mjs';
import { Worker } from './workers.mjs';

export async function measureHandshakeCpu({ caPem, server, device, count, resume = false, nice = 0 }) {
  const srv = new Worker('handshake-server', workerPath('handshake-cpu.mjs'));
  const cli = new Worker('handshake-client', workerPath('handshake-cpu.mjs'));
  try {
    if (nice) for (const w of [srv, cli]) os.setPriority(w.pid, nice);
    const { port } = await srv.request({ type: 'serve', caPem, keyPem: server.keyPem, certPem: server.certPem }, 'listening');
    // Warm both processes up (code paths, JIT) before the measured run.
    await srv.request({ type: 'mark' }, 'marked');
    await cli.request({ type: 'connect', port, caPem, keyPem: device.keyPem, certPem: device.certPem, count: Math.min(50, count), resume }, 'connected', 300_000);
    await srv.request({ type: 'mark' }, 'marked');
    const c = await cli.request({ type: 'connect', port, caPem, keyPem: device.keyPem, certPem: device.certPem, count, resume }, 'connected', 600_000);
    const s = await srv.request({ type: 'stats' }, 'stats');
    return {
      handshakes: count,
      resume,
      serverMs: +(s.cpuMs / s.handshakes).toFixed(3),
      deviceMs: +(c.cpuMs / c.count).toFixed(3),
      wallMs: +(c.wallMs / c.count).toFixed(3),
      // Resumed handshakes the server saw, and of those how many still carried the verified device certificate.
      resumed: s.resumed,
      resumedWithPeer: s.resumedWithPeer,
    };
  } finally {
    await Promise.all([srv.stop(), cli.stop()]);
  }
}
