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
positional: _input, default_args, default_env, resolved
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
  resolved:
    description:
      - Per instance name, the values that replace its V(auto) args (the plan's C(tensor_parallel_size),
        C(pipeline_parallel_size) and C(max_model_len)). Args that are not V(auto) are kept.
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
      C(gpus), C(task), C(args), C(env), C(api_key), C(enabled), C(tensor_parallel_size), C(pipeline_parallel_size),
      C(probe_host), C(url), C(reserved_args) and C(endpoint).
    - C(task=embed) adds C(runner=pooling) to the args unless they set C(runner).
    - C(tensor_parallel_size), C(pipeline_parallel_size) and C(args.max_model_len) may be V(auto), for the
      planner to fill in.
    - C(endpoint) holds what clients need, without secrets (C(name), C(model), C(base_url), C(gpus)).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence

# Args the role sets itself from the instance's own keys.
RESERVED_ARGS = ("model", "host", "port", "served_model_name", "api_key")
_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")
# What an instance serves. vLLM picks the runner from the architecture; an embedding instance states it
# (``--runner pooling``, vLLM 0.10 and newer; ``--task embed`` before).
TASKS = {"generate": {}, "embed": {"runner": "pooling"}}
AUTO = "auto"


def _arg_key(key):
    return str(key).lstrip("-").replace("-", "_")


def _int_arg(args, key, where):
    value = args.get(key, 1)
    if value is None:
        return 1
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"{where}: args.{key} must be an integer, got {value!r}") from exc


def normalize_instance(instance, default_args=None, default_env=None, position=0, resolved=None):
    if not isinstance(instance, dict):
        raise AnsibleFilterError(f"vllm_instances[{position}] must be a dict, got {type(instance).__name__}")
    name = instance.get("name")
    where = f"vllm_instances[{position}] ({name or 'unnamed'})"
    for key in ("args", "env"):
        if not isinstance(instance.get(key) or {}, dict):
            raise AnsibleFilterError(f"{where}: {key} must be a dict")
    args = {_arg_key(k): v for k, v in (default_args or {}).items()}
    args.update({_arg_key(k): v for k, v in (instance.get("args") or {}).items()})
    for key, value in ((resolved or {}).get(name) or {}).items():
        if args.get(_arg_key(key)) == AUTO:
            args[_arg_key(key)] = value
    task = instance.get("task") or "generate"
    if task not in TASKS:
        raise AnsibleFilterError(f"{where}: task must be one of {', '.join(TASKS)}, got {task!r}")
    for key, value in TASKS[task].items():
        args.setdefault(key, value)
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
        "task": task,
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


def vllm_instances(instances, default_args=None, default_env=None, resolved=None):
    if not is_sequence(instances):
        raise AnsibleFilterError(f"vllm_instances must be a list, got {type(instances).__name__}")
    for label, value in (("vllm_default_args", default_args), ("vllm_default_env", default_env)):
        if value is not None and not isinstance(value, dict):
            raise AnsibleFilterError(f"{label} must be a dict, got {type(value).__name__}")
    if resolved is not None and not isinstance(resolved, dict):
        raise AnsibleFilterError(f"resolved must be a dict, got {type(resolved).__name__}")
    return [normalize_instance(item, default_args, default_env, i, resolved) for i, item in enumerate(instances)]


def _budget(instance):
    """The instance's share of the device, 0 for an absolute KV cache size, None when undeclared."""
    value = instance["args"].get("gpu_memory_utilization")
    if value is None:
        # vLLM ignores gpu_memory_utilization when the KV cache is given in bytes; the planner checks bytes.
        return 0.0 if instance["args"].get("kv_cache_memory_bytes") is not None else None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(
            f"instance {instance['name']}: args.gpu_memory_utilization must be a number, got {value!r}"
        ) from exc


def _fmt(number):
    return f"{number:.2f}".rstrip("0").rstrip(".")


def vllm_gpu_sharing(instances, limit=0.95, device="cuda"):
    """Problems of enabled instances that share a GPU (or, on cpu, the host's memory).

    Instances may share a GPU only when each declares its budget (``args.gpu_memory_utilization``: vLLM's
    fraction of the whole device) and the budgets sum to ``limit`` or less. Returns a list of messages,
    empty when every shared device is budgeted.
    """
    enabled = [i for i in instances if i.get("enabled", True)]
    users = {}
    if device == "cpu":
        if len(enabled) > 1:
            users["the host memory (cpu)"] = enabled
    else:
        for instance in enabled:
            for gpu in instance.get("gpus") or []:
                users.setdefault(f"GPU {gpu}", []).append(instance)
    problems = []
    for where, sharing in users.items():
        if len(sharing) < 2:
            continue
        budgets = [(i["name"], _budget(i)) for i in sharing]
        names = " and ".join(f"{i['name']} (gpus {i.get('gpus') or 'none'})" for i in sharing)
        unset = [name for name, value in budgets if value is None]
        if unset:
            problems.append(
                f"{where} is shared by {names}, but {', '.join(unset)} declare{'s' if len(unset) == 1 else ''} no "
                f"budget. Fix: set args.gpu_memory_utilization on each of them so that they sum to {_fmt(limit)} "
                "or less (or args.kv_cache_memory_bytes), or give them separate GPUs."
            )
            continue
        total = sum(budget[1] for budget in budgets)
        if total > limit + 1e-9:
            shown = " + ".join(f"{name} {_fmt(value)}" for name, value in budgets)
            problems.append(
                f"{where} is shared by {names}, whose budgets sum to {_fmt(total)} ({shown}), more than "
                f"{_fmt(limit)}. Fix: lower args.gpu_memory_utilization so that they sum to {_fmt(limit)} or less."
            )
    return problems


class FilterModule:
    def filters(self):
        return {"vllm_instances": vllm_instances, "vllm_gpu_sharing": vllm_gpu_sharing}
