#!/usr/bin/env bash
# System packages the packaging tests and `npm run package` need (Debian/Ubuntu, as root or
# with sudo). Installs only what is missing; prints nothing when everything is there.
#   dpkg-deb (dpkg-dev's companion)  builds the .debs (dpkg-deb is in dpkg itself)
#   mmdebstrap                        a minimal Debian root for the throwaway install root
#   podman + runc                     runs that root as a container (see tests/packaging/README)
#   qemu-user-static + *-arm64-cross  runs the arm64 Node binary on amd64, called directly
#   systemd                           systemd-analyze verify on the installed unit
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
have systemd-analyze || need+=(systemd)
have xz || need+=(xz-utils)
have aarch64-linux-gnu-strip || need+=(binutils-aarch64-linux-gnu)
have strip || need+=(binutils)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
echo "[packaging] installing system packages: ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
