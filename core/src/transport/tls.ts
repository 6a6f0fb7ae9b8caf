/** The device's mTLS material, used for gRPC and for the artifact server alike. */
export interface DeviceTlsMaterial {
  /** PEM of the CA bundle that signs the server's certificates. */
  ca: Buffer;
  /** PEM of the device certificate (the device's identity). */
  cert: Buffer;
  /** PEM of the device private key. */
  key: Buffer;
}
