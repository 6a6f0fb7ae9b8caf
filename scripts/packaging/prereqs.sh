#!/usr/bin/env bash
# System packages the packaging tests and `npm run package` need (Debian/Ubuntu, as root or
# with sudo). Installs only what is missing; prints nothing when everything is there.
#   dpkg (dpkg-deb), xz-utils         build the .debs
#   binutils, binutils-aarch64-linux-gnu   strip the Node.js binaries of both architectures
#   mmdebstrap                        a minimal Debian root for the throwaway install root
#   podman + runc                     run that root as a container (tests/packaging/helpers/debian-root.ts)
#   qemu-user-static + *-arm64-cross  run the arm64 Node.js on amd64, called directly (no binfmt)
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have dpkg-deb || need+=(dpkg)
have mmdebstrap || need+=(mmdebstrap)
have podman || need+=(podman)
have runc || need+=(runc)
have qemu-aarch64-static || need+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
[ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || need+=(libstdc++6-arm64-cross)
[ -e /usr/aarch64-linux-gnu/lib/libgcc_s.so.1 ] || need+=(libgcc-s1-arm64-cross)
have xz || need+=(xz-utils)
have aarch64-linux-gnu-strip || need+=(binutils-aarch64-linux-gnu)
have strip || need+=(binutils)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
echo "[packaging] installing system packages: ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
