// The container engine settings the image build and its tests share: our own podman store
// (never the machine's, and not the container-artifact tests' store, whose cleanup removes
// images) and runc with cgroupfs, which work on these machines where crun does not
// (../shared/ENVIRONMENT.md). Nothing under /etc changes.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const IMAGE_WORK = process.env.MESHANICS_IMAGE_WORK ?? '/var/tmp/meshanics-image';

const DRIVERS = ['overlay', 'vfs'];

/** Writes the config files and returns the environment podman must run with. */
export function imageEnv() {
  mkdirSync(path.join(IMAGE_WORK, 'tmp'), { recursive: true });
  const containersConf = writeConf('containers.conf', containersConfText());
  const registriesConf = writeConf('registries.conf', 'unqualified-search-registries = []\n');
  const driver = storageDriver(containersConf);
  // One file per driver: test workers and a bench import this at once, and a run forced to vfs
  // must not have its store switched under it by a process that chose overlay.
  const storageConf = writeConf(`storage-${driver}.conf`, storageConfText(driver, IMAGE_WORK));
  return { CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf, CONTAINERS_REGISTRIES_CONF: registriesConf };
}

/**
 * overlay where the kernel mounts it, else vfs. vfs copies the whole image for every new
 * container: measured here (2026-12-06) `podman run` of the ~195 MB server image took 1.1, 2.1,
 * 3.5 s on three starts in a row (each copy's writeback piling onto the next), which the image
 * benchmark counted as the server's cold start; overlay shares the image's layers.
 * MESHANICS_IMAGE_STORAGE_DRIVER forces one. Only a successful overlay probe is remembered
 * (in IMAGE_WORK, with the kernel it ran on): a failed one may have been a passing hiccup, and
 * is tried again by the next process rather than pinning the slow driver for good.
 */
function storageDriver(containersConf) {
  const forced = process.env.MESHANICS_IMAGE_STORAGE_DRIVER;
  if (forced) {
    if (!DRIVERS.includes(forced)) throw new Error(`MESHANICS_IMAGE_STORAGE_DRIVER=${forced}: expected one of ${DRIVERS.join(', ')}`);
    return forced;
  }
  const memo = path.join(IMAGE_WORK, 'storage-driver');
  const known = `overlay ${os.release()}`;
  try {
    if (readFileSync(memo, 'utf8').trim() === known) return 'overlay';
  } catch {
    // not probed yet on this kernel
  }
  if (!overlayMounts(containersConf)) return 'vfs';
  writeConf('storage-driver', `${known}\n`);
  return 'overlay';
}

function containersConfText() {
  // A container may not raise its open-files limit past the host's hard limit (runc refuses
  // to start it); a server holds one descriptor per connected device, so take all of it.
  const nofile = hardOpenFiles();
  return `[containers]\ndefault_ulimits = ["nofile=${nofile}:${nofile}", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "${IMAGE_WORK}/tmp"\n`;
}

function storageConfText(driver, root) {
  // Each driver has its own store: containers/storage refuses one made by another driver. The
  // vfs store keeps the path it always had, so its cached images stay usable.
  const graphroot = driver === 'vfs' ? `${root}/storage` : `${root}/storage-${driver}`;
  return `[storage]\ndriver = "${driver}"\ngraphroot = "${graphroot}"\nrunroot = "${root}/run-${driver}"\n`;
}

/** Temp file and rename: another process may be reading the file this moment. */
function writeConf(name, text) {
  const file = path.join(IMAGE_WORK, name);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, text);
  renameSync(temp, file);
  return file;
}

/** podman's own overlay check (it mounts a test overlay at store init), on a scratch store with our engine settings. */
function overlayMounts(containersConf) {
  // Per process: test workers may import this at the same moment.
  const probe = path.join(IMAGE_WORK, `overlay-probe-${process.pid}`);
  mkdirSync(probe, { recursive: true });
  const conf = path.join(probe, 'storage.conf');
  writeFileSync(conf, storageConfText('overlay', probe));
  try {
    const r = spawnSync('podman', ['info', '--format', '{{.Store.GraphDriverName}}'], {
      encoding: 'utf8',
      env: { ...process.env, CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: conf },
      timeout: 30_000,
    });
    return !r.error && r.status === 0 && r.stdout.trim() === 'overlay';
  } finally {
    try {
      rmSync(probe, { recursive: true, force: true });
    } catch {
      // a leftover scratch dir is harmless; the answer is what matters
    }
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
