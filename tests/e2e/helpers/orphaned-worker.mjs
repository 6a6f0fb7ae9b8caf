// Run by serve-workers.test.ts: a node:cluster primary (this file) and one worker that joins
// the cluster and logs as a `serve --workers` worker does (the server's own joinCluster and
// createLogger, built). The primary never reads the worker's output, so the worker's log lines
// back up in its buffer, as they did behind a slow reader on 2026-12-07; the test then kills
// the primary and expects the worker to end.
import cluster from 'node:cluster';

const dist = new URL('../../../server/dist/', import.meta.url);

if (cluster.isPrimary) {
  cluster.setupPrimary({ silent: true });
  const worker = cluster.fork({ MESHANICS_WORKER_SLOT: '1' });
  worker.on('message', (message) => {
    if (message === 'backed up') console.log(JSON.stringify({ msg: 'backed up', pid: worker.process.pid }));
  });
} else {
  const { joinCluster } = await import(new URL('cluster/worker.js', dist).href);
  const { createLogger } = await import(new URL('observability/log.js', dist).href);
  joinCluster(() => undefined);
  const logger = createLogger({ fd: 1, sync: false });
  const filler = 'x'.repeat(1000);
  // Megabytes: far more than the socket to the primary holds.
  for (let i = 0; i < 4000; i++) logger.info({ i, filler }, 'filler');
  setTimeout(() => process.send('backed up'), 500);
  setInterval(() => undefined, 1000);
}
