#!/usr/bin/env bash
# The Node.js runtime we ship and test on (24 LTS), from the npm registry's node-linux-<arch>
# packages: the only place this machine can get it, and the same bytes for CI, the server image
# and the device packages. Headers (include/node) come in the same package, so native addons
# (better-sqlite3) build against it with npm_config_nodedir and no download from nodejs.org.
#
#   scripts/lib/node-runtime.sh [ARCH] [MAJOR]    ARCH x64 (default) or arm64, MAJOR 24 (default)
#
# Prints the runtime's directory (bin/node, include/node) on its last line. Cached under
# $MESHANICS_CACHE_DIR (default ~/.cache/meshanics): a second call asks the registry only which
# version is newest, and uses the cache without asking when the registry cannot be reached.
set -euo pipefail
ARCH=${1:-x64}
MAJOR=${2:-24}
CACHE=${MESHANICS_CACHE_DIR:-$HOME/.cache/meshanics}
PKG=node-linux-$ARCH
case "$ARCH" in x64|arm64) ;; *) echo "node-runtime: unknown architecture '$ARCH' (x64 or arm64)" >&2; exit 2 ;; esac

log() { printf '[node-runtime] %s\n' "$*" >&2; }
mkdir -p "$CACHE"

version=$(npm view "$PKG@$MAJOR" version --json 2>/dev/null | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    try { const v = JSON.parse(s); const list = Array.isArray(v) ? v : [v];
      list.sort((a, b) => { const x = a.split(".").map(Number), y = b.split(".").map(Number);
        return x[0] - y[0] || x[1] - y[1] || x[2] - y[2]; });
      process.stdout.write(list.at(-1) ?? ""); } catch { /* offline: fall back to the cache */ }
  });' || true)
if [ -z "$version" ]; then
  cached=$(ls -d "$CACHE/$PKG-$MAJOR."* 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$cached" ] && [ -x "$cached/bin/node" ] || { log "cannot reach the npm registry and nothing cached for $PKG@$MAJOR"; exit 1; }
  log "registry unreachable: using cached $(basename "$cached")"
  echo "$cached"; exit 0
fi

dir=$CACHE/$PKG-$version
if [ ! -x "$dir/bin/node" ]; then
  log "fetching $PKG@$version from the npm registry"
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$PKG@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  [ -x "$tmp/package/bin/node" ] || { log "$PKG@$version has no bin/node"; exit 1; }
  # Rename into place: a concurrent or interrupted fetch never leaves a half-unpacked runtime.
  mv "$tmp/package" "$tmp/ready" && mv -T "$tmp/ready" "$dir" 2>/dev/null || [ -x "$dir/bin/node" ]
fi
echo "$dir"
