# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Normalize the vllm role's ``vllm_instances`` list."""

from __future__ import annotations

DOCUMENTATION = r"""
name: vllm_instances
short_description: Normalize C(vllm_instances) entries for the vllm role
version_added: 0.1.0
author: gpubox.llm maintainers
description:
  - Fills each instance's defaults (served model name, bind address, GPUs, enabled), merges the role-wide
    default args and environment under the instance's own, normalizes arg names to snake_case and derives
    the values the role checks and renders (parallel sizes, the URL to probe, reserved args that were set).
  - Pure function; it validates shapes and raises an error naming the instance and the key on bad input.
positional: _input, default_args, default_env
options:
  _input:
    description: The C(vllm_instances) list.
    type: list
    elements: dict
    required: true
  default_args:
    description: Args merged under every instance's C(args).
    type: dict
    default: {}
  default_env:
    description: Environment merged under every instance's C(env).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Normalize the instances
  ansible.builtin.set_fact:
    instances: "{{ vllm_instances | gpubox.llm.vllm_instances(vllm_default_args, vllm_default_env) }}"
"""

RETURN = r"""
_value:
  description:
    - One dict per instance with the keys C(name), C(model), C(served_model_name), C(host), C(port),
      C(gpus), C(args), C(env), C(api_key), C(enabled), C(tensor_parallel_size), C(pipeline_parallel_size),
      C(probe_host), C(url), C(reserved_args) and C(endpoint).
    - C(endpoint) holds what clients need, without secrets (C(name), C(model), C(base_url), C(gpus)).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence

# Args the role sets itself from the instance's own keys.
RESERVED_ARGS = ("model", "host", "port", "served_model_name", "api_key")
_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def _arg_key(key):
    return str(key).lstrip("-").replace("-", "_")


def _int_arg(args, key, where):
    value = args.get(key, 1)
    if value is None:
        return 1
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"{where}: args.{key} must be an integer, got {value!r}") from exc


def normalize_instance(instance, default_args=None, default_env=None, position=0):
    if not isinstance(instance, dict):
        raise AnsibleFilterError(f"vllm_instances[{position}] must be a dict, got {type(instance).__name__}")
    name = instance.get("name")
    where = f"vllm_instances[{position}] ({name or 'unnamed'})"
    for key in ("args", "env"):
        if not isinstance(instance.get(key) or {}, dict):
            raise AnsibleFilterError(f"{where}: {key} must be a dict")
    args = {_arg_key(k): v for k, v in (default_args or {}).items()}
    args.update({_arg_key(k): v for k, v in (instance.get("args") or {}).items()})
    env = dict(default_env or {})
    env.update(instance.get("env") or {})
    gpus = instance.get("gpus") or []
    if not is_sequence(gpus):
        raise AnsibleFilterError(f"{where}: gpus must be a list of GPU indices, got {gpus!r}")
    host = str(instance.get("host") or "127.0.0.1")
    probe_host = "127.0.0.1" if host in _WILDCARD_HOSTS else host
    if ":" in probe_host and not probe_host.startswith("["):
        probe_host = f"[{probe_host}]"
    port = instance.get("port")
    return {
        "name": name,
        "model": instance.get("model"),
        "served_model_name": instance.get("served_model_name") or name,
        "host": host,
        "port": port,
        "gpus": list(gpus),
        "args": args,
        "env": env,
        "api_key": instance.get("api_key") or None,
        "enabled": bool(instance.get("enabled", True)),
        "tensor_parallel_size": _int_arg(args, "tensor_parallel_size", where),
        "pipeline_parallel_size": _int_arg(args, "pipeline_parallel_size", where),
        "probe_host": probe_host,
        "url": f"http://{probe_host}:{port}",
        "reserved_args": sorted(k for k in args if k in RESERVED_ARGS),
        "endpoint": {
            "name": name,
            "model": instance.get("served_model_name") or name,
            "base_url": f"http://{probe_host}:{port}/v1",
            "gpus": list(gpus),
        },
    }


def vllm_instances(instances, default_args=None, default_env=None):
    if not is_sequence(instances):
        raise AnsibleFilterError(f"vllm_instances must be a list, got {type(instances).__name__}")
    for label, value in (("vllm_default_args", default_args), ("vllm_default_env", default_env)):
        if value is not None and not isinstance(value, dict):
            raise AnsibleFilterError(f"{label} must be a dict, got {type(value).__name__}")
    return [normalize_instance(item, default_args, default_env, i) for i, item in enumerate(instances)]


class FilterModule:
    def filters(self):
        return {"vllm_instances": vllm_instances}
