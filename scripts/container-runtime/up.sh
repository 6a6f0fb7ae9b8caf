#!/usr/bin/env bash
# A real container runtime for the container-artifact tests, with nothing changed under /etc:
#   - installs podman, runc, docker-registry and busybox-static when missing (Debian, as root);
#   - writes containers.conf / storage.conf / registries.conf / registry.yml into a work dir
#     and points podman at them through CONTAINERS_* environment variables;
#   - starts `podman system service` (the Docker Engine API) on a unix socket and a registry on
#     127.0.0.1:$MESHANICS_REGISTRY_PORT (5000), each only if not already answering;
#   - builds the test images from a busybox-static rootfs (no network), pushes them and writes
#     their digests to $WORK/runtime.json, which the tests read.
# Idempotent: a second run finds everything up and the images in the registry, and only
# rewrites runtime.json. Prints the path of runtime.json on its last line.
# The tests do not share the service started here: each test file (each simulated device)
# starts a podman service on an image store of its own under $WORK/stores, with the settings
# below, and pulls from this registry (plugins/artifact-container/tests/helpers/private-store.ts).
# One shared store let one file's image removals break another file's pending update.
#
#   MESHANICS_CONTAINERS_DIR   work dir (default /tmp/meshanics-containers)
#   MESHANICS_REGISTRY_PORT    registry port on 127.0.0.1 (default 5000)
#   MESHANICS_CONTAINERS_NO_INSTALL=1   never call apt-get (fail instead)
set -euo pipefail

WORK=${MESHANICS_CONTAINERS_DIR:-/tmp/meshanics-containers}
PORT=${MESHANICS_REGISTRY_PORT:-5000}
REGISTRY=127.0.0.1:$PORT
SOCK=$WORK/podman.sock
REPO=meshanics-test/web
OTHER_REPO=meshanics-test/other
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf '[container-runtime] %s\n' "$*" >&2; }
die() { printf '[container-runtime] error: %s\n' "$*" >&2; exit 1; }

# ---- packages ---------------------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for pkg in podman runc docker-registry busybox-static; do
  pkg_installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${MESHANICS_CONTAINERS_NO_INSTALL:-}" = 1 ] && die "missing Debian packages: ${missing[*]}"
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo -n); fi
  log "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  # policy-rc.d on CI images denies service starts; we start what we need ourselves.
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq podman runc docker-registry busybox-static >/dev/null
fi
[ "$(id -u)" = 0 ] || die "podman's rootful service is used here: run as root"
[ -x /bin/busybox ] || die "/bin/busybox missing (package busybox-static)"

# ---- configuration (ours, never /etc) -----------------------------------------------------
mkdir -p "$WORK"/{storage,run,tmp,registry,build}
cat >"$WORK/containers.conf" <<EOF
# crun fails on these machines (rlimits, hybrid cgroups): runc + cgroupfs + low ulimits work.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$WORK/tmp"
EOF
cat >"$WORK/storage.conf" <<EOF
# Our own store: the tests never see (or touch) the machine's other images and containers.
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
cat >"$WORK/registries.conf" <<EOF
unqualified-search-registries = []
[[registry]]
location = "$REGISTRY"
insecure = true
EOF
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
export CONTAINERS_CONF=$WORK/containers.conf
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf

# ---- services -----------------------------------------------------------------------------
# probe <what>: 0 when it answers. Node is there anyway (the tests need it); curl may not be.
probe() {
  node "$HERE/probe.mjs" "$@"
}

wait_for() {
  local what=$1 logfile=$2; shift 2
  for _ in $(seq 1 100); do
    probe "$what" "$@" && return 0
    sleep 0.1
  done
  tail -n 20 "$logfile" >&2 || true
  die "$what did not come up"
}

if probe registry "$REGISTRY"; then
  log "registry already up on $REGISTRY"
else
  if node -e 'const s=require("net").connect(+process.argv[1],"127.0.0.1");s.on("connect",()=>process.exit(0));s.on("error",()=>process.exit(1))' "$PORT"; then
    die "127.0.0.1:$PORT is taken by something that is not an open registry (set MESHANICS_REGISTRY_PORT)"
  fi
  log "starting docker-registry on $REGISTRY"
  setsid nohup docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 </dev/null &
  echo $! >"$WORK/registry.pid"
  wait_for registry "$WORK/registry.log" "$REGISTRY"
fi

if probe podman "$SOCK"; then
  log "podman service already up on $SOCK"
else
  rm -f "$SOCK"
  log "starting podman system service on $SOCK"
  setsid nohup podman system service --time=0 "unix://$SOCK" >"$WORK/podman.log" 2>&1 </dev/null &
  echo $! >"$WORK/podman.pid"
  wait_for podman "$WORK/podman.log" "$SOCK"
fi

# ---- test images --------------------------------------------------------------------------
# variant -> index page, whether /health exists
declare -A INDEX=([v1]='meshanics-test v1' [v2]='meshanics-test v2' [bad]='meshanics-test bad' [other]='not managed by meshanics')
declare -A HEALTH=([v1]=1 [v2]=1 [bad]=0 [other]=1)
VARIANTS=(v1 v2 bad other)
# Bump when the images below change: a registry holding the old ones is rebuilt.
RECIPE=2
repo_of() { if [ "$1" = other ]; then echo "$OTHER_REPO"; else echo "$REPO"; fi; }

all_present=1
if [ -f "$WORK/images.env" ]; then
  # shellcheck disable=SC1091
  . "$WORK/images.env"
  [ "${IMAGES_RECIPE:-}" = "$RECIPE" ] || all_present=0
  for v in "${VARIANTS[@]}"; do
    var=DIGEST_$v
    d=${!var:-}
    if [ -z "$d" ] || ! probe manifest "$REGISTRY" "$(repo_of "$v")" "$d"; then all_present=0; fi
  done
else
  all_present=0
fi

if [ "$all_present" = 1 ]; then
  log "test images already in the registry"
else
  log "building test images from busybox-static"
  printf 'IMAGES_RECIPE=%s\n' "$RECIPE" >"$WORK/images.env.tmp"
  for v in "${VARIANTS[@]}"; do
    root=$WORK/build/$v
    rm -rf "$root"
    mkdir -p "$root"/{bin,www,tmp}
    cp /bin/busybox "$root/bin/busybox"
    for applet in sh httpd sleep cat echo ls; do ln -s busybox "$root/bin/$applet"; done
    printf '%s\n' "${INDEX[$v]}" >"$root/www/index.html"
    if [ "${HEALTH[$v]}" = 1 ]; then printf 'ok\n' >"$root/www/health"; fi
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$WORK/build/$v.tar" .
    local_ref=localhost/$(repo_of "$v"):$v
    remote_ref=$REGISTRY/$(repo_of "$v"):$v
    # sh is PID 1 and exits on SIGTERM (a bare httpd as PID 1 ignores it: every stop would
    # wait for the kill timeout).
    podman import --quiet \
      --change 'CMD ["/bin/sh","-c","trap \"exit 0\" TERM; httpd -f -p 8080 -h /www & wait"]' \
      --change 'EXPOSE 8080/tcp' \
      "$WORK/build/$v.tar" "$local_ref" >/dev/null
    podman push --quiet --tls-verify=false --digestfile "$WORK/build/$v.digest" "$local_ref" "$remote_ref"
    # The local copy goes: the tests pull from the registry for real.
    podman rmi --force "$local_ref" >/dev/null
    printf 'DIGEST_%s=%s\n' "$v" "$(cat "$WORK/build/$v.digest")" >>"$WORK/images.env.tmp"
  done
  mv "$WORK/images.env.tmp" "$WORK/images.env"
  # shellcheck disable=SC1091
  . "$WORK/images.env"
fi

# ---- what the tests read ------------------------------------------------------------------
node -e '
const [file, sock, registry, repo, otherRepo, ...pairs] = process.argv.slice(1);
const images = {};
for (const pair of pairs) {
  const [variant, digest] = pair.split("=");
  const repository = `${registry}/${variant === "other" ? otherRepo : repo}`;
  images[variant] = { repository, digest, ref: `${repository}@${digest}`, tagRef: `${repository}:${variant}` };
}
const out = { socketPath: sock, registry, images, env: {
  CONTAINERS_CONF: process.env.CONTAINERS_CONF,
  CONTAINERS_STORAGE_CONF: process.env.CONTAINERS_STORAGE_CONF,
  CONTAINERS_REGISTRIES_CONF: process.env.CONTAINERS_REGISTRIES_CONF } };
require("fs").writeFileSync(file + ".tmp", JSON.stringify(out, null, 2) + "\n");
require("fs").renameSync(file + ".tmp", file);
' "$WORK/runtime.json" "$SOCK" "$REGISTRY" "$REPO" "$OTHER_REPO" \
  "v1=$DIGEST_v1" "v2=$DIGEST_v2" "bad=$DIGEST_bad" "other=$DIGEST_other"
log "ready: socket $SOCK, registry $REGISTRY"
echo "$WORK/runtime.json"
