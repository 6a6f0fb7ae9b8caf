#!/bin/sh
# meshanics-agent launcher: runs the agent with the Node.js runtime shipped next to it, so a
# device needs neither node nor npm on its PATH. This file lives in
# /usr/lib/meshanics-agent/versions/<version>/bin/; /usr/bin/meshanics-agent is a symlink to
# it through the `current` link, and it finds its own version directory through that link.
set -e
here=$(dirname "$(readlink -f "$0")")
version_dir=$(dirname "$here")
# The package's data dir, unless the caller chose one (flag or variable). Only where the
# package made it: a tarball install without it keeps core's default.
if [ -z "${MESHANICS_DATA_DIR:-}" ] && [ -d /var/lib/meshanics-agent ]; then
  MESHANICS_DATA_DIR=/var/lib/meshanics-agent
  export MESHANICS_DATA_DIR
fi
# The service runs as the `meshanics` user: an enrollment done as root would leave a key that
# user cannot read, so root's `enroll` into the package's data dir is done as that user
# (MESHANICS_ENROLL_AS_ROOT=1 opts out; another --data-dir is left alone).
case " $* " in *' --data-dir'*) own_dir=1 ;; *) own_dir= ;; esac
if [ "$1" = enroll ] && [ -z "$own_dir" ] && [ "$(id -u)" = 0 ] && [ -z "${MESHANICS_ENROLL_AS_ROOT:-}" ] &&
  [ "${MESHANICS_DATA_DIR:-}" = /var/lib/meshanics-agent ] && getent passwd meshanics >/dev/null 2>&1; then
  exec runuser -u meshanics -- "$here/meshanics-agent" "$@"
fi
exec "$here/node" "$version_dir/node_modules/@meshanics/core/dist/cli/agent-cli.js" "$@"
