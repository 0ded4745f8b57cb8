#!/usr/bin/env bash
# The collection as users get it: build the tarball, install it into an empty collections path,
# then render the module docs and syntax-check the site playbook through the FQCN only.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GPUBOX_ROOT"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --force --output-path "$work" >/dev/null
tarball="$(ls "$work"/gpubox-llm-*.tar.gz)"
log "built $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"
if tar -tzf "$tarball" | grep -E '^(molecule|tests|\.venv|\.cache|collections)/' ; then
  die "the tarball holds files build_ignore should drop"
fi
# Outside the checkout: no ansible.cfg pointing back at it.
cd "$work"
printf '[defaults]\n' >"$work/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$work/collections" ANSIBLE_CONFIG="$work/ansible.cfg" ANSIBLE_NOCOLOR=1
# Galaxy is unreachable: the dependencies come from the ansible package already installed.
ansible-galaxy collection install --no-deps -p "$work/collections" "$tarball" >/dev/null
for module in gpubox.llm.gpu_info gpubox.llm.vllm_health; do
  ansible-doc "$module" | grep -q "^> MODULE $module" || die "ansible-doc $module did not render"
done
for filter in gpubox.llm.vllm_args gpubox.llm.systemd_exec_args gpubox.llm.vllm_instances; do
  ansible-doc -t filter "$filter" >/dev/null || die "ansible-doc -t filter $filter did not render"
done
for role in gpubox.llm.vllm gpubox.llm.host_tuning; do
  ansible-doc -t role "$role" >/dev/null || die "ansible-doc -t role $role did not render"
done
printf 'llm_servers:\n  hosts:\n    box:\n' >"$work/hosts.yml"
ansible-playbook -i "$work/hosts.yml" --syntax-check gpubox.llm.site >/dev/null
log "installed collection: docs render, gpubox.llm.site parses"
