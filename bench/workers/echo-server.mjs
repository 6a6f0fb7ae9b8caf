// The baseline for the server benchmarks: a bare grpc-js server with mutual TLS, the same
// proto service, the same message limits and the same certificates as `meshanics-server
// serve`, whose handlers answer at once (no identity lookup, no database).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadDeviceService } from '@meshanics/core/contract';

const [dataDir, heartbeatSeconds = '30'] = process.argv.slice(2);
const pki = path.join(dataDir, 'pki');
const interval = Number(heartbeatSeconds);

const server = new grpc.Server({
  'grpc.max_receive_message_length': 1024 * 1024,
  'grpc.max_send_message_length': 4 * 1024 * 1024,
});
server.addService(loadDeviceService().service, {
  Register: (_call, cb) => cb(null, { deviceName: '', fleet: '', heartbeatIntervalSeconds: interval }),
  Heartbeat: (_call, cb) => cb(null, { assignments: [], logRequests: [], offboarded: false, nextHeartbeatSeconds: interval }),
  ReportArtifactStatus: (_call, cb) => cb(null, { accepted: true }),
  UploadLogs: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'stub' }),
});
const credentials = grpc.ServerCredentials.createSsl(
  readFileSync(path.join(pki, 'ca.crt')),
  [{ private_key: readFileSync(path.join(pki, 'server.key')), cert_chain: readFileSync(path.join(pki, 'server.crt')) }],
  true,
);
server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(JSON.stringify({ msg: 'echo listening', grpc: `127.0.0.1:${port}` }));
});
const stop = () => server.tryShutdown(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
