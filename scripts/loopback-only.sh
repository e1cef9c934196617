#!/usr/bin/env bash
# Run a command in a fresh network namespace that has only the loopback interface, so that
# nothing it starts (servers, browsers, ICE agents) can reach any address but 127.0.0.1.
# Needs root (CI runs as root); elsewhere the command runs as it is and the tests' own ICE
# restriction (CLOUDBRANCH_ICE_LOOPBACK_ONLY and the browser-side candidate filter) still holds.
set -euo pipefail
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' loopback-only "$@"
fi
echo "loopback-only: cannot make a network namespace; running in the host network" >&2
exec "$@"
