import * as net from 'node:net';
import { MeshError } from '../errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `host:port` or `[v6]:port`; port 0 asks the OS for a free port. */
export function parseListenAddress(value: string, flag: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !Number.isInteger(port) || port > 65535 || (m[1] !== undefined && net.isIPv6(m[1]) === false)) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `${flag} must be HOST:PORT or [IPv6]:PORT, got "${value}"`);
  }
  return { host, port };
}

export function formatHostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
