// Operator-side device lifecycle. Certificates are issued by pki/; this module ties them to
// device rows and the audit trail.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import { generateP256KeyPair } from '../pki/x509.js';
import { issueDeviceCertificate, issuedCertificateRecord, type IssuedCertificate } from '../pki/device-certificate.js';
import { deviceSpiffeId } from '@meshanics/core/contract';

export interface DeviceCredentials extends IssuedCertificate {
  fleet: string;
  name: string;
  /** PKCS#8 PEM. `device issue-cert` only (tests, demos): enrollment keeps the key on the device. */
  keyPem: string;
  caPem: string;
  /** The newest root metadata: the device's pinned TUF trust anchor. */
  tufRootJson: string;
}

function spiffeIdOrThrow(trustDomain: string, fleet: string, name: string): string {
  try {
    return deviceSpiffeId({ trustDomain, fleet, name });
  } catch (err) {
    throw new MeshError('MESH_ERR_PKI_INVALID_IDENTITY', (err as Error).message, { cause: err });
  }
}

/**
 * Generates a device key pair, issues its certificate and records the (not yet registered)
 * device, so assignments can be made before the agent first runs.
 */
export async function provisionDevice(ctx: MeshanicsContext, input: { fleet: string; name: string; days?: number; actor?: string }): Promise<DeviceCredentials> {
  const spiffeId = spiffeIdOrThrow(ctx.trustDomain, input.fleet, input.name);
  if ((await ctx.store.getDeviceBySpiffeId(spiffeId))?.decommissionedAt) {
    throw new MeshError('MESH_ERR_DEVICE_DECOMMISSIONED', `device ${input.fleet}/${input.name} is decommissioned`);
  }
  const ca = await ctx.deviceCa();
  const pair = generateP256KeyPair();
  const issued = await issueDeviceCertificate(
    ca,
    crypto.createPublicKey(pair.publicKeyPem),
    { trustDomain: ctx.trustDomain, fleet: input.fleet, name: input.name },
    input.days === undefined ? {} : { days: input.days },
  );
  await ctx.store.withWriteLock(async () => {
    const now = new Date().toISOString();
    const { device } = await ctx.store.ensureDevice({ spiffeId, fleet: input.fleet, name: input.name, now });
    if (device.decommissionedAt) {
      throw new MeshError('MESH_ERR_DEVICE_DECOMMISSIONED', `device ${input.fleet}/${input.name} is decommissioned`);
    }
    await ctx.store.certificates.insert({ ...issuedCertificateRecord(issued, device.id, now), reason: 'operator', enrollmentTokenId: null });
    await ctx.store.appendAudit({
      at: now,
      actor: input.actor ?? 'operator',
      action: 'device.certificate_issued',
      subject: `device:${spiffeId}`,
      details: { serialNumber: issued.serialNumber, notAfter: issued.notAfter },
    });
  });
  ctx.logger.info({ device: spiffeId, serialNumber: issued.serialNumber, notAfter: issued.notAfter }, 'device certificate issued');
  return {
    ...issued,
    fleet: input.fleet,
    name: input.name,
    keyPem: pair.privateKeyPem,
    caPem: fs.readFileSync(ctx.layout.caCertFile, 'utf8'),
    tufRootJson: ctx.tuf.latestRootBytes().toString('utf8'),
  };
}

/**
 * Marks a device decommissioned. Its next heartbeat is told `offboarded` (once); from then on
 * the device API, the artifact server and certificate renewal refuse its identity. The record
 * and its history stay, and so does its name: a returning device enrolls under a new name.
 */
export async function decommissionDevice(ctx: MeshanicsContext, input: { fleet: string; name: string; actor?: string }): Promise<void> {
  await ctx.store.withWriteLock(async () => {
    const device = await ctx.store.getDeviceByName(input.fleet, input.name);
    if (!device) throw new MeshError('MESH_ERR_DEVICE_NOT_FOUND', `no device ${input.fleet}/${input.name}`);
    if (device.decommissionedAt) return;
    const now = new Date().toISOString();
    await ctx.store.decommissionDevice(device.id, now);
    await ctx.store.appendAudit({ at: now, actor: input.actor ?? 'operator', action: 'device.decommissioned', subject: `device:${device.spiffeId}` });
  });
}
