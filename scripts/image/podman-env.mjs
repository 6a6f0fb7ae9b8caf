// The container engine settings the image build and its tests share: our own podman store
// (never the machine's, and not the container-artifact tests' store, whose cleanup removes
// images) and runc with cgroupfs, which work on these machines where crun does not
// (../shared/ENVIRONMENT.md). Nothing under /etc changes.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const IMAGE_WORK = process.env.MESHANICS_IMAGE_WORK ?? '/var/tmp/meshanics-image';

/** Writes the config files (idempotent) and returns the environment podman must run with. */
export function imageEnv() {
  mkdirSync(path.join(IMAGE_WORK, 'tmp'), { recursive: true });
  // A container may not raise its open-files limit past the host's hard limit (runc refuses
  // to start it); a server holds one descriptor per connected device, so take all of it.
  const nofile = hardOpenFiles();
  const files = {
    'containers.conf': `[containers]\ndefault_ulimits = ["nofile=${nofile}:${nofile}", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "${IMAGE_WORK}/tmp"\n`,
    'storage.conf': storageConf(storageDriver()),
    'registries.conf': 'unqualified-search-registries = []\n',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(IMAGE_WORK, name), text);
  return {
    CONTAINERS_CONF: path.join(IMAGE_WORK, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: path.join(IMAGE_WORK, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path.join(IMAGE_WORK, 'registries.conf'),
  };
}

/**
 * overlay where the kernel mounts it, else vfs. vfs copies the whole image for every new
 * container: measured here (2026-12-06) `podman run` of the ~195 MB server image took 1.1, 2.1,
 * 3.5 s on three starts in a row (each copy's writeback piling onto the next), which the image
 * benchmark counted as the server's cold start; overlay shares the image's layers. Each driver
 * has its own store: containers/storage refuses to open a store with another driver.
 * MESHANICS_IMAGE_STORAGE_DRIVER forces one; the probe's answer is kept in IMAGE_WORK.
 */
export function storageDriver() {
  const forced = process.env.MESHANICS_IMAGE_STORAGE_DRIVER;
  if (forced) {
    if (!DRIVERS.includes(forced)) throw new Error(`MESHANICS_IMAGE_STORAGE_DRIVER=${forced}: expected one of ${DRIVERS.join(', ')}`);
    return forced;
  }
  const memo = path.join(IMAGE_WORK, 'storage-driver');
  try {
    const known = readFileSync(memo, 'utf8').trim();
    if (DRIVERS.includes(known)) return known;
  } catch {
    // not probed yet
  }
  const mounts = overlayMounts();
  // No podman (yet): say vfs for now and probe again once it is installed.
  if (mounts === undefined) return 'vfs';
  const driver = mounts ? 'overlay' : 'vfs';
  const temp = `${memo}.${process.pid}.tmp`;
  writeFileSync(temp, `${driver}\n`);
  renameSync(temp, memo);
  return driver;
}

const DRIVERS = ['overlay', 'vfs'];

function storageConf(driver) {
  // The vfs store keeps its old path, so a machine's cached base image stays usable.
  const graphroot = driver === 'vfs' ? `${IMAGE_WORK}/storage` : `${IMAGE_WORK}/storage-${driver}`;
  return `[storage]\ndriver = "${driver}"\ngraphroot = "${graphroot}"\nrunroot = "${IMAGE_WORK}/run-${driver}"\n`;
}

/** podman's own overlay check (it mounts a test overlay at store init), on a scratch store; undefined without podman. */
function overlayMounts() {
  // Per process: test workers may import this at the same moment.
  const probe = path.join(IMAGE_WORK, `overlay-probe-${process.pid}`);
  mkdirSync(probe, { recursive: true });
  const conf = path.join(probe, 'storage.conf');
  writeFileSync(conf, storageConf('overlay').replaceAll(IMAGE_WORK, probe));
  try {
    const r = spawnSync('podman', ['info', '--format', '{{.Store.GraphDriverName}}'], {
      encoding: 'utf8',
      env: { ...process.env, CONTAINERS_STORAGE_CONF: conf },
      timeout: 30_000,
    });
    if (r.error) return undefined;
    return r.status === 0 && r.stdout.trim() === 'overlay';
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

function hardOpenFiles() {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    return hard === 'unlimited' ? 1048576 : Math.min(Number(hard) || 1024, 1048576);
  } catch {
    return 1024;
  }
}
