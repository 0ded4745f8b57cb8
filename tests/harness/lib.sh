# Shared helpers for the test and demo harness. Source it; do not run it.
# shellcheck shell=bash

GPUBOX_CACHE="${GPUBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpubox}"
GPUBOX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export GPUBOX_CACHE GPUBOX_ROOT

log() { printf '\033[1m[gpubox %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The Debian mirror the host itself uses, so the images reach the same archive.
debian_mirror() {
  if [ -n "${GPUBOX_DEBIAN_MIRROR:-}" ]; then echo "$GPUBOX_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +http[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -oE 'http[^ ]+' | head -n1)
  echo "${uri:-http://deb.debian.org/debian}"
}

# Value of a pip configuration key as the controller's pip sees it (env, user, global files).
pip_config() {
  python3 -m pip config list 2>/dev/null | sed -nE "s/^[a-z:.]*\.?$1='(.*)'$/\1/p" | head -n1
}

# The CA bundle HTTPS clients on this host trust (pip's `cert` first).
ca_bundle() {
  local c
  c=$(pip_config cert)
  for f in "$c" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    [ -n "$f" ] && [ -f "$f" ] && { echo "$f"; return; }
  done
}

# A short content hash of files, used to tag images so that a change rebuilds them.
content_hash() { cat "$@" | sha256sum | cut -c1-12; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

ensure_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  command -v dockerd >/dev/null || die "docker engine missing: run 'make deps' (installs docker.io)"
  log "starting dockerd"
  (setsid dockerd >"${GPUBOX_CACHE}/dockerd.log" 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  die "dockerd did not start; see ${GPUBOX_CACHE}/dockerd.log"
}

# Start a systemd container the way every harness script does (host network, a 2 GiB /dev/shm,
# the wheel cache and CA bundle mounted), then wait for boot. Usage:
#   start_systemd_container NAME IMAGE [extra docker run args...]
start_systemd_container() {
  local name="$1" image="$2"; shift 2
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --hostname "$name" --cap-add SYS_ADMIN --cgroupns host \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --network host --shm-size 2g \
    -v "$GPUBOX_CACHE/wheels:/var/cache/gpubox/wheels:ro" \
    -v "$GPUBOX_CACHE/ca-bundle.pem:/var/cache/gpubox/ca-bundle.pem:ro" \
    "$@" "$image" >/dev/null
  docker exec "$name" systemctl is-system-running --wait >/dev/null 2>&1 || true
}
