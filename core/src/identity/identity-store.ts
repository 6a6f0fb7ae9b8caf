// The enrolled identity in the data dir, so `meshanics-agent run --data-dir DIR` needs
// nothing else:
//   identity/enrollment.json   fleet, name, device API and artifact server addresses
//   identity/ca.crt            the CA bundle the server presented at enrollment
//   identity/tuf-root.json     the TUF root the device pins
//   identity/gen-<n>/          one key pair and its certificate (key mode 0600)
//   identity/current -> gen-<n>  switched by one rename, so a renewal never leaves a
//                                certificate paired with the wrong key
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MeshError } from '../errors.js';
import { exists, swapSymlink, writeFileAtomic, writeJsonAtomic } from '../kit/atomic-file.js';
import { lastGoodRootFile } from '../tuf/trust-files.js';
import type { EnrollmentResponse } from './enrollment-client.js';

export const OFFBOARDED_MARKER = 'OFFBOARDED';

export interface EnrollmentRecord {
  fleet: string;
  name: string;
  spiffeId: string;
  deviceApi: string;
  artifactServer: string;
  /** Where renewals go (the enrollment endpoint). */
  enrollUrl: string;
  enrolledAt: string;
}

export interface EnrolledIdentity {
  enrollment: EnrollmentRecord;
  certPath: string;
  keyPath: string;
  caPath: string;
  tufRootPath: string;
}

function identityDir(dataDir: string): string {
  return path.join(dataDir, 'identity');
}

async function writeGeneration(dir: string, privateKeyPem: string, certificatePem: string): Promise<string> {
  const gen = `gen-${Date.now()}-${process.pid}`;
  const genDir = path.join(dir, gen);
  await fs.mkdir(genDir, { mode: 0o700 });
  await writeFileAtomic(path.join(genDir, 'device.key'), privateKeyPem, { mode: 0o600 });
  await writeFileAtomic(path.join(genDir, 'device.crt'), certificatePem, { mode: 0o644 });
  return gen;
}

/** Points `current` at a generation with one atomic rename. */
async function switchCurrent(dir: string, gen: string): Promise<void> {
  await swapSymlink(path.join(dir, 'current'), gen);
}

/** Keeps the current generation and the one before it; older key material goes. */
async function pruneGenerations(dir: string): Promise<void> {
  const current = await fs.readlink(path.join(dir, 'current'));
  const gens = (await fs.readdir(dir)).filter((n) => n.startsWith('gen-')).sort();
  const keep = new Set([current, gens.filter((g) => g !== current).at(-1)]);
  await Promise.all(gens.filter((g) => !keep.has(g)).map((g) => fs.rm(path.join(dir, g), { recursive: true, force: true })));
}

export async function readOffboardedMarker(dataDir: string): Promise<{ at: string; fleet?: string; name?: string } | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dataDir, OFFBOARDED_MARKER), 'utf8')) as { at: string };
  } catch {
    return undefined;
  }
}

export async function saveEnrollment(
  dataDir: string,
  response: EnrollmentResponse,
  privateKeyPem: string,
  enrollUrl: string,
  options: { force?: boolean } = {},
): Promise<EnrolledIdentity> {
  const dir = identityDir(dataDir);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const existing = await loadEnrolledIdentity(dataDir);
  if (existing && !options.force) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `${dataDir} is already enrolled as ${existing.enrollment.fleet}/${existing.enrollment.name}; use --force to replace it`);
  }
  if (existing) await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(path.join(dir, 'ca.crt'), response.caBundle, { mode: 0o644 });
  await writeFileAtomic(path.join(dir, 'tuf-root.json'), response.tufRoot, { mode: 0o644 });
  const gen = await writeGeneration(dir, privateKeyPem, response.certificate);
  await switchCurrent(dir, gen);
  const record: EnrollmentRecord = {
    fleet: response.fleet,
    name: response.name,
    spiffeId: response.spiffeId,
    deviceApi: response.deviceApi,
    artifactServer: response.artifactServer,
    enrollUrl,
    enrolledAt: new Date().toISOString(),
  };
  // Written last: its presence is what says "enrolled".
  await writeJsonAtomic(path.join(dir, 'enrollment.json'), record, { mode: 0o644 });
  // A device that enrolls again after being offboarded starts a new life.
  await fs.rm(path.join(dataDir, OFFBOARDED_MARKER), { force: true });
  return (await loadEnrolledIdentity(dataDir))!;
}

export async function loadEnrolledIdentity(dataDir: string): Promise<EnrolledIdentity | undefined> {
  const dir = identityDir(dataDir);
  let enrollment: EnrollmentRecord;
  try {
    enrollment = JSON.parse(await fs.readFile(path.join(dir, 'enrollment.json'), 'utf8')) as EnrollmentRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MeshError('MESH_ERR_IDENTITY_MISSING', `cannot read ${path.join(dir, 'enrollment.json')}: ${(err as Error).message}`, { cause: err });
  }
  return {
    enrollment,
    certPath: path.join(dir, 'current', 'device.crt'),
    keyPath: path.join(dir, 'current', 'device.key'),
    caPath: path.join(dir, 'ca.crt'),
    tufRootPath: path.join(dir, 'tuf-root.json'),
  };
}

/** Installs a renewed key and certificate; the switch is one rename. */
export async function installRenewed(dataDir: string, privateKeyPem: string, response: Pick<EnrollmentResponse, 'certificate' | 'caBundle'>): Promise<void> {
  const dir = identityDir(dataDir);
  await writeFileAtomic(path.join(dir, 'ca.crt'), response.caBundle, { mode: 0o644 });
  const gen = await writeGeneration(dir, privateKeyPem, response.certificate);
  await switchCurrent(dir, gen);
  await pruneGenerations(dir);
}

/**
 * Offboarding: deletes every piece of key material and enrollment state the agent holds
 * (plus any key/cert files it was started with), then leaves a marker so a restart does
 * not try to run as a device that no longer exists.
 */
export async function wipeIdentity(dataDir: string, extraFiles: string[], who: { fleet?: string; name?: string }): Promise<void> {
  await fs.rm(identityDir(dataDir), { recursive: true, force: true });
  await fs.rm(path.join(dataDir, 'tuf'), { recursive: true, force: true });
  await fs.rm(lastGoodRootFile(path.join(dataDir, 'tuf')), { force: true });
  for (const file of extraFiles) await fs.rm(file, { force: true });
  await writeJsonAtomic(path.join(dataDir, OFFBOARDED_MARKER), { at: new Date().toISOString(), ...who }, { mode: 0o644 });
  if (await exists(identityDir(dataDir))) {
    throw new MeshError('MESH_ERR_OFFBOARDED', `could not remove ${identityDir(dataDir)}`);
  }
}
