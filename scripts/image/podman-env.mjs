// The container engine settings the image build and its tests share: our own podman store
// (never the machine's, and not the container-artifact tests' store, whose cleanup removes
// images) and runc with cgroupfs, which work on these machines where crun does not
// (../shared/ENVIRONMENT.md). Nothing under /etc changes.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
    'storage.conf': `[storage]\ndriver = "vfs"\ngraphroot = "${IMAGE_WORK}/storage"\nrunroot = "${IMAGE_WORK}/run"\n`,
    'registries.conf': 'unqualified-search-registries = []\n',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(IMAGE_WORK, name), text);
  return {
    CONTAINERS_CONF: path.join(IMAGE_WORK, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: path.join(IMAGE_WORK, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path.join(IMAGE_WORK, 'registries.conf'),
  };
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
