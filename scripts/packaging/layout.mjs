// The device's file tree, the same for the .deb and the tarball (issue 24):
//   /usr/bin/meshanics-agent -> ../lib/meshanics-agent/current/bin/meshanics-agent
//   /usr/lib/meshanics-agent/versions/<version>/{bin/node, bin/meshanics-agent, node_modules/, NODE-LICENSE}
//   /usr/lib/meshanics-agent/current -> versions/<version>      (room for issue 28's self-update:
//       a new version is unpacked beside the old one and `current` switched)
//   /usr/lib/meshanics-agent/plugins/<package name>/            vendor plugins, enabled by name
//   /usr/lib/meshanics-agent/plugins/node_modules -> ../current/node_modules
//       (a vendor plugin's `import '@meshanics/core'` gets the agent's own copy, same instance)
//   /usr/lib/meshanics-agent/node_modules -> plugins
//       (core's `import(name)` walks up from versions/<v>/node_modules/... and reaches it)
//   /etc/meshanics/agent.json                                   conffile, deny by default
//   /usr/lib/systemd/system/meshanics-agent.service             core/systemd's unit, adapted
import { chmod, copyFile, cp, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const LIB = 'usr/lib/meshanics-agent';
// Under /usr: systemd reads it there on every Debian release, and the tarball then has no
// top-level lib/ entry, which GNU tar would unpack over a merged-/usr system's /lib symlink.
export const UNIT = 'usr/lib/systemd/system/meshanics-agent.service';

/** core/systemd's unit with the package's paths and user; every edit must apply. */
export function adaptUnit(text) {
  const edits = [
    [
      /^# The Meshanics device agent\..*\n#.*\n/m,
      '# The Meshanics device agent, as installed by the meshanics-agent package. Enroll once:\n#   meshanics-agent enroll --server https://HOST:PORT --token T --name NAME --ca-fingerprint SHA256\n#   systemctl start meshanics-agent\n',
    ],
    [/^ExecStart=.*$/m, 'ExecStart=/usr/bin/meshanics-agent run --data-dir /var/lib/meshanics-agent --config /etc/meshanics/agent.json'],
    [/^Type=simple$/m, 'Type=simple\n# The package creates this system user (postinst); it owns /var/lib/meshanics-agent.\nUser=meshanics\nGroup=meshanics'],
    [/^StateDirectory=meshanics$/m, 'StateDirectory=meshanics-agent'],
    // The agent updates itself (issue 28, plugins/artifact-agent): it unpacks new versions beside
    // the running one and switches the current/previous links, so its install root is writable
    // for it. The previous version's watchdog (the leading "-": nothing to do before the first
    // self-update, when there is no previous) guards every start: before it (--arm: during a
    // trial it watches that start from inside the service's cgroup, so KillMode=control-group
    // cannot end it before B starts, and it kills a B that hangs at the deadline) and after it
    // (--once: B's exit status, the rollback once past the deadline). watchdog.ts says why.
    [
      /^ReadWritePaths=\/var\/lib\/meshanics$/m,
      'ReadWritePaths=/var/lib/meshanics-agent /usr/lib/meshanics-agent\nExecStartPre=-/usr/lib/meshanics-agent/previous/bin/node /usr/lib/meshanics-agent/previous/node_modules/@meshanics/artifact-agent/dist/watchdog.js --arm /var/lib/meshanics-agent %n\nExecStopPost=-/usr/lib/meshanics-agent/previous/bin/node /usr/lib/meshanics-agent/previous/node_modules/@meshanics/artifact-agent/dist/watchdog.js --once /var/lib/meshanics-agent $EXIT_STATUS',
    ],
  ];
  for (const [from, to] of edits) {
    if (!from.test(text)) throw new Error(`core/systemd/meshanics-agent.service changed: ${from} no longer matches; update scripts/packaging/layout.mjs`);
    text = text.replace(from, to);
  }
  return text;
}

/** Writes the tree under ROOTDIR from the app's node_modules and the runtime for one arch. */
export async function writeLayout({ repo, rootDir, version, appModules, runtimeDir }) {
  const lib = path.join(rootDir, LIB);
  const versionDir = path.join(lib, 'versions', version);
  await mkdir(path.join(versionDir, 'bin'), { recursive: true });
  await cp(appModules, path.join(versionDir, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  await copyFile(path.join(runtimeDir, 'node'), path.join(versionDir, 'bin', 'node'));
  await chmod(path.join(versionDir, 'bin', 'node'), 0o755);
  await copyFile(path.join(runtimeDir, 'LICENSE'), path.join(versionDir, 'NODE-LICENSE'));
  await copyFile(path.join(repo, 'packaging/files/meshanics-agent.sh'), path.join(versionDir, 'bin', 'meshanics-agent'));
  await chmod(path.join(versionDir, 'bin', 'meshanics-agent'), 0o755);
  await symlink(`versions/${version}`, path.join(lib, 'current'));
  await mkdir(path.join(lib, 'plugins'), { recursive: true });
  await symlink('../current/node_modules', path.join(lib, 'plugins', 'node_modules'));
  await symlink('plugins', path.join(lib, 'node_modules'));
  await mkdir(path.join(rootDir, 'usr/bin'), { recursive: true });
  await symlink('../lib/meshanics-agent/current/bin/meshanics-agent', path.join(rootDir, 'usr/bin/meshanics-agent'));
  await mkdir(path.join(rootDir, 'etc/meshanics'), { recursive: true });
  await copyFile(path.join(repo, 'packaging/files/agent.json'), path.join(rootDir, 'etc/meshanics/agent.json'));
  await chmod(path.join(rootDir, 'etc/meshanics/agent.json'), 0o644);
  await mkdir(path.dirname(path.join(rootDir, UNIT)), { recursive: true });
  await writeFile(path.join(rootDir, UNIT), adaptUnit(await readFile(path.join(repo, 'core/systemd/meshanics-agent.service'), 'utf8')));
  await mkdir(path.join(rootDir, 'usr/share/doc/meshanics-agent'), { recursive: true });
  await copyFile(path.join(runtimeDir, 'LICENSE'), path.join(rootDir, 'usr/share/doc/meshanics-agent/NODE-LICENSE'));
}
