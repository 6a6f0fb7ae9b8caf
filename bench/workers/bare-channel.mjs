// The idle agent's baseline: a bare node process holding one grpc-js mTLS channel (the
// device's certificate, the agent's channel options) and making a stub call at the agent's
// heartbeat cadence. Only grpc-js and proto-loader are loaded.
// Args: ADDRESS CERT_DIR INTERVAL_SECONDS. Prints {"msg":"heartbeat","at":...} per call.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const [address, certDir, intervalSeconds] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const protoPath = require.resolve('@meshanics/core/proto/meshanics/device/v1/device.proto');
const definition = protoLoader.loadSync(protoPath, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
const { DeviceService } = grpc.loadPackageDefinition(definition).meshanics.device.v1;
const client = new DeviceService(
  address,
  grpc.credentials.createSsl(readFileSync(path.join(certDir, 'ca.crt')), readFileSync(path.join(certDir, 'device.key')), readFileSync(path.join(certDir, 'device.crt'))),
  { 'grpc.keepalive_time_ms': 60_000, 'grpc.max_receive_message_length': 4 * 1024 * 1024 },
);
const call = (method, request) =>
  new Promise((resolve, reject) => client[method](request, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (e, r) => (e ? reject(e) : resolve(r))));

await call('register', {});
console.log(JSON.stringify({ msg: 'registered' }));
const beat = async () => {
  await call('heartbeat', { installed: [] });
  console.log(JSON.stringify({ msg: 'heartbeat', at: Date.now() }));
};
await beat();
setInterval(
  () => {
    beat().catch((e) => console.error(e.message));
  },
  Number(intervalSeconds) * 1000,
);
process.once('SIGTERM', () => {
  client.close();
  process.exit(0);
});
