import type * as grpc from '@grpc/grpc-js';

/** A refusal on the device API with its gRPC status; its message goes to the device, so it names no other device. */
export class Refusal extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}
