#!/usr/bin/env bash
# The test command behind `make test` and CI: lint, sanity, unit tests, then Molecule scenarios.
# Images and wheel caches build in the background while the static checks run.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GPUBOX_ROOT"
export PATH="$GPUBOX_ROOT/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

"$GPUBOX_ROOT/tests/harness/deps.sh"
mkdir -p "$GPUBOX_CACHE/logs"

log "building images in the background (log: $GPUBOX_CACHE/logs/images.log)"
# Debian 13 (trixie) is the compose scenario's target: its archive has compose v2.
( tests/harness/build-base-image.sh bookworm && tests/harness/build-vllm-image.sh \
  && tests/harness/build-base-image.sh trixie ) \
  >"$GPUBOX_CACHE/logs/images.log" 2>&1 &
images_pid=$!

status=0 passed=0 failed=0
step() {
  local name="$1"; shift
  log "== $name"
  if "$@"; then
    log "== $name: ok"; passed=$((passed + 1))
  else
    log "== $name: FAILED"; failed=$((failed + 1)); status=1
  fi
}

step "yamllint" yamllint -s .
step "ansible-lint" ansible-lint --offline
step "ruff" ruff check .
step "ruff format" ruff format --check .
step "ansible-test sanity" tests/harness/sanity.sh
step "unit tests" pytest -n 2 tests/unit
step "installed collection" tests/harness/installed.sh

log "waiting for images"
if ! wait "$images_pid"; then
  tail -n 60 "$GPUBOX_CACHE/logs/images.log"
  die "image build failed"
fi
GPUBOX_BASE_IMAGE="$(tests/harness/build-base-image.sh bookworm)"
GPUBOX_VLLM_IMAGE="$(tests/harness/build-vllm-image.sh)"
GPUBOX_TRIXIE_IMAGE="$(tests/harness/build-base-image.sh trixie)"
export GPUBOX_BASE_IMAGE GPUBOX_VLLM_IMAGE GPUBOX_TRIXIE_IMAGE

# Scenarios run side by side (GPUBOX_JOBS at a time, default 2): each one mostly waits on its container.
mkdir -p "$GPUBOX_CACHE/apt-archives/partial" "$GPUBOX_CACHE/apt-archives-trixie/partial"
read -r -a scenarios <<<"${GPUBOX_SCENARIOS:-gateway default nvidia_debian multi_instance rollback compose}"
for scenario in "${scenarios[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "${GPUBOX_JOBS:-2}" ]; do sleep 2; done
  log "== molecule $scenario started (log: $GPUBOX_CACHE/logs/molecule-$scenario.log)"
  rm -f "$GPUBOX_CACHE/logs/molecule-$scenario.rc"
  ( rc=0; molecule test -s "$scenario" >"$GPUBOX_CACHE/logs/molecule-$scenario.log" 2>&1 || rc=$?
    echo "$rc" >"$GPUBOX_CACHE/logs/molecule-$scenario.rc" ) &
done
wait
for scenario in "${scenarios[@]}"; do
  if [ "$(cat "$GPUBOX_CACHE/logs/molecule-$scenario.rc" 2>/dev/null)" = 0 ]; then
    tail -n 40 "$GPUBOX_CACHE/logs/molecule-$scenario.log"
    log "== molecule $scenario: ok"; passed=$((passed + 1))
  else
    cat "$GPUBOX_CACHE/logs/molecule-$scenario.log"
    log "== molecule $scenario: FAILED"; failed=$((failed + 1)); status=1
  fi
done

echo "checks: $passed passed, $failed failed"
exit "$status"
