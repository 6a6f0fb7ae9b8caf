import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Absolute path of the device contract. The server and the agent load this very file. */
export const DEVICE_PROTO_PATH = fileURLToPath(new URL('../../proto/meshanics/device/v1/device.proto', import.meta.url));

/** Loader options shared by both ends so field names and enum encodings agree. */
export const DEVICE_PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});

export interface DeviceServiceDefinition {
  service: grpc.ServiceDefinition;
  /** Constructor of the generated client. */
  Client: grpc.ServiceClientConstructor;
}

let cached: DeviceServiceDefinition | undefined;

/** Loads meshanics.device.v1.DeviceService from the .proto (the single source of the contract). */
export function loadDeviceService(): DeviceServiceDefinition {
  if (cached) return cached;
  const definition = protoLoader.loadSync(DEVICE_PROTO_PATH, DEVICE_PROTO_LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    meshanics: { device: { v1: { DeviceService: grpc.ServiceClientConstructor } } };
  };
  const Client = pkg.meshanics.device.v1.DeviceService;
  cached = { service: Client.service, Client };
  return cached;
}
