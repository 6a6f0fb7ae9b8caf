// The .deb around a layout: control file, conffiles, maintainer scripts, dpkg-deb.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { treeBytes } from './app-tree.mjs';

const SCRIPTS = ['postinst', 'prerm', 'postrm'];

export async function buildDeb({ repo, rootDir, version, arch, out }) {
  const debian = path.join(rootDir, 'DEBIAN');
  await mkdir(debian, { recursive: true });
  const installedKiB = Math.ceil((await treeBytes(rootDir)) / 1024);
  await writeFile(
    path.join(debian, 'control'),
    [
      'Package: meshanics-agent',
      `Version: ${version}`,
      `Architecture: ${arch}`,
      'Maintainer: Meshanics maintainers <maintainers@meshanics.invalid>',
      `Installed-Size: ${installedKiB}`,
      // The bundled Node.js needs glibc >= 2.28 and the C++ runtime; useradd comes from passwd.
      'Depends: libc6 (>= 2.28), libstdc++6, libgcc-s1, passwd',
      'Section: admin',
      'Priority: optional',
      'Homepage: https://github.com/meshanics/meshanics',
      'Description: Meshanics device agent (over-the-air updates for edge devices)',
      ' The Meshanics agent with its default plugins and its own Node.js runtime: no node or npm',
      ' is needed on the device. Enroll with `meshanics-agent enroll`, then start',
      ' meshanics-agent.service. Vendor plugins go to /usr/lib/meshanics-agent/plugins/<name>/.',
      '',
    ].join('\n'),
  );
  await writeFile(path.join(debian, 'conffiles'), '/etc/meshanics/agent.json\n');
  for (const script of SCRIPTS) {
    await copyFile(path.join(repo, 'packaging/debian', script), path.join(debian, script));
    await chmod(path.join(debian, script), 0o755);
  }
  const file = path.join(out, `meshanics-agent_${version}_${arch}.deb`);
  // xz: the Node binary compresses 109 -> ~30 MB; -Zxz is what Debian itself uses.
  await promisify(execFile)('dpkg-deb', ['--root-owner-group', '-Zxz', '-z6', '--build', rootDir, file]);
  return { file, installedKiB };
}
