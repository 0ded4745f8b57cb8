#!/usr/bin/env bash
# `make demo`: a real vLLM serving SmolLM2-135M-Instruct in a local systemd container, deployed by
# `ansible-playbook -i inventories/demo site.yml`, then asked a question.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GPUBOX_ROOT"
export PATH="$GPUBOX_ROOT/.venv/bin:$PATH"

port="${GPUBOX_DEMO_PORT:-8000}"
name=gpubox-demo
image="$(tests/harness/build-vllm-image.sh)"

if [ "$(docker inspect -f '{{.State.Running}} {{.Config.Image}}' "$name" 2>/dev/null)" != "true $image" ]; then
  log "starting the demo container $name from $image"
  start_systemd_container "$name" "$image"
fi

log "ansible-playbook -i inventories/demo site.yml"
ansible-playbook -i inventories/demo site.yml -e "@$GPUBOX_CACHE/target-vars.yml" -e "gpubox_demo_port=$port"

url="http://127.0.0.1:$port"
cat <<MSG

  vLLM is serving SmolLM2-135M-Instruct (model name "smollm2") at $url/v1

  Ask it yourself:

    curl -s $url/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32, "temperature": 0}'

MSG
answer="$(curl -s "$url/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32, "temperature": 0}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')"
echo "  The model answered: $answer"
echo
echo "  Remove the demo with: make demo-clean"
