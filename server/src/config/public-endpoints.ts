// What enrolled devices are told to connect to. Defaults to the bound listeners, which is right
// on one host; behind NAT, a load balancer or a wildcard bind (0.0.0.0) the operator says it.
import * as net from 'node:net';
import type { DeviceEndpoints } from '../enrollment/http.js';
import { MeshError } from '../errors.js';
import { parseListenAddress } from './listen-address.js';
import type { Logger } from '../observability/log.js';

export function publicGrpcAddress(value: string): string {
  const { port } = parseListenAddress(value, '--public-grpc-address');
  if (port === 0) throw new MeshError('MESH_ERR_CONFIG_INVALID', `--public-grpc-address needs a real port, got "${value}"`);
  return value;
}

export function publicArtifactUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `--public-artifact-url must be https://HOST:PORT, got "${value}"`);
  }
  if (url.protocol !== 'https:' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `--public-artifact-url must be https://HOST[:PORT] without a path, got "${value}"`);
  }
  return url.origin;
}

const isWildcard = (host: string): boolean => net.isIP(host) !== 0 && (host === '0.0.0.0' || host === '::' || host === '[::]');

export function resolveDeviceEndpoints(
  bound: { grpcHost: string; grpcAddress: string; artifactHost: string; artifactsUrl: string },
  configured: { publicGrpcAddress?: string | undefined; publicArtifactUrl?: string | undefined },
  logger: Logger,
): DeviceEndpoints {
  const endpoints = {
    deviceApi: configured.publicGrpcAddress !== undefined ? publicGrpcAddress(configured.publicGrpcAddress) : bound.grpcAddress,
    artifactServer: configured.publicArtifactUrl !== undefined ? publicArtifactUrl(configured.publicArtifactUrl) : bound.artifactsUrl,
  };
  if (configured.publicGrpcAddress === undefined && isWildcard(bound.grpcHost)) {
    logger.warn({ deviceApi: endpoints.deviceApi }, 'device API binds a wildcard address: set --public-grpc-address so enrolled devices can reach it');
  }
  if (configured.publicArtifactUrl === undefined && isWildcard(bound.artifactHost)) {
    logger.warn({ artifactServer: endpoints.artifactServer }, 'artifact server binds a wildcard address: set --public-artifact-url so enrolled devices can reach it');
  }
  return endpoints;
}
