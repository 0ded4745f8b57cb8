#!/usr/bin/env bash
# Install what the tests and the demo need on a fresh Debian/Ubuntu machine, then start docker.
# Idempotent: re-running only checks.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v rsync >/dev/null || need+=(rsync)
command -v git >/dev/null || need+=(git)
command -v shellcheck >/dev/null || need+=(shellcheck)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$GPUBOX_CACHE"
ensure_docker

venv="$GPUBOX_ROOT/.venv"
req="$GPUBOX_ROOT/requirements-dev.txt"
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
if ! cmp -s "$req" "$venv/.requirements-dev.txt"; then
  log "installing controller tools (requirements-dev.txt)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" \
    2> >(grep -v "is neither a file nor a directory" >&2)
  cp "$req" "$venv/.requirements-dev.txt"
fi
