# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""What the gateway serves: the models of the serving hosts and the replicas behind each one."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence

DOCUMENTATION = r"""
name: gateway_routes
short_description: The models a gateway routes to, and the vLLM replicas behind each one
version_added: 0.4.0
author: gpubox.llm maintainers
description:
  - Reads the C(vllm_instances) of every serving host and groups the enabled instances by their served model name.
    Instances of several hosts that serve the same name are replicas of one model.
  - Each replica's address is what the gateway host can reach. An instance bound to loopback is reachable only
    from its own host; a wildcard bind (C(0.0.0.0)) is reached at the serving host's C(gateway_backend_address),
    else its C(ansible_host), else its inventory name.
  - Pure function; returns the problems it finds (instead of raising) so that the role can fail with all of
    them before any change.
positional: _input, backend_hosts, gateway_host
options:
  _input:
    description: C(hostvars), or any mapping of inventory name to variables.
    type: dict
    required: true
  backend_hosts:
    description: Inventory names of the serving hosts.
    type: list
    elements: str
    required: true
  gateway_host:
    description: Inventory name of the gateway host; its own instances are reached on loopback.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the routes
  ansible.builtin.set_fact:
    routes: "{{ hostvars | gpubox.llm.gateway_routes(groups['llm_servers'], inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description:
    - C(models), one dict per served model, sorted by name, with C(model), C(upstream) (an nginx upstream
      name), C(task), C(roles) (Continue.dev roles), C(api_key) (the replicas' vLLM key, or none) and
      C(servers), a list of C(host), C(instance) and C(address) (C(ip:port)).
    - C(problems), a list of messages, empty when the routes are usable.
  type: dict
"""

# Continue.dev model roles (config.yaml reference).
CLIENT_ROLES = ("chat", "edit", "apply", "autocomplete", "embed", "rerank", "summarize")
DEFAULT_ROLES = {"generate": ["chat", "edit", "apply"], "embed": ["embed"]}
_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\])$")
_WILDCARD = ("0.0.0.0", "::", "[::]", "")
# Names that are safe in nginx configuration strings and JSON without escaping.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


def _bracket(address):
    address = str(address)
    if ":" in address and not address.startswith("["):
        return f"[{address}]"
    return address


def _vars(hostvars, host):
    try:
        return hostvars[host]
    except KeyError as exc:
        raise AnsibleFilterError(f"gateway_routes: {host} is not in the inventory") from exc


def _get(variables, key, default=None):
    try:
        value = variables[key]
    except KeyError:
        return default
    return default if value is None else value


def _address(instance, host, host_vars, gateway_host):
    """The address the gateway connects to, or a problem."""
    bind = str(instance.get("host") or "127.0.0.1")
    local = host == gateway_host
    if _LOOPBACK.match(bind):
        if local:
            return bind if bind != "localhost" else "127.0.0.1", None
        return None, (
            f"{host}: vllm instance {instance.get('name')} binds {bind}, which the gateway on {gateway_host} "
            f"cannot reach. Fix: set its host to {host}'s private address (the interface the gateway reaches "
            "it on)."
        )
    if bind in _WILDCARD:
        if local:
            return "127.0.0.1", None
        return str(_get(host_vars, "gateway_backend_address") or _get(host_vars, "ansible_host") or host), None
    return bind, None


def gateway_routes(hostvars, backend_hosts, gateway_host):
    if not is_sequence(backend_hosts):
        raise AnsibleFilterError("gateway_routes: backend_hosts must be a list of inventory names")
    problems = []
    if not backend_hosts:
        problems.append(
            "the gateway has no serving hosts (gateway_backend_hosts is empty). Fix: put the hosts that run vLLM in "
            "the llm_servers group, or set gateway_backend_hosts."
        )
    models = {}
    for host in backend_hosts:
        host_vars = _vars(hostvars, host)
        instances = _get(host_vars, "vllm_instances", [])
        if not is_sequence(instances):
            problems.append(f"{host}: vllm_instances must be a list")
            continue
        for position, instance in enumerate(instances):
            if not isinstance(instance, dict):
                problems.append(f"{host}: vllm_instances[{position}] must be a dict")
                continue
            if not instance.get("enabled", True):
                continue
            name = instance.get("name")
            model = str(instance.get("served_model_name") or name or "")
            where = f"{host}: vllm instance {name}"
            if not MODEL_NAME.match(model):
                problems.append(
                    f"{where}: served model name {model!r} is not usable through the gateway (letters, digits and "
                    "._:/@+- only, 200 at most)."
                )
                continue
            task = instance.get("task") or "generate"
            roles = instance.get("roles")
            roles = list(DEFAULT_ROLES.get(task, ["chat"]) if roles is None else roles)
            unknown = [role for role in roles if role not in CLIENT_ROLES]
            if unknown:
                problems.append(
                    f"{where}: roles {unknown} are not Continue.dev roles (valid: {', '.join(CLIENT_ROLES)})."
                )
            address, problem = _address(instance, host, host_vars, gateway_host)
            if problem:
                problems.append(problem)
                continue
            entry = models.setdefault(
                model, {"model": model, "task": task, "roles": [], "api_key": instance.get("api_key"), "servers": []}
            )
            if entry["task"] != task:
                problems.append(
                    f"{where} serves {model} with task {task}, but another replica serves it with task "
                    f"{entry['task']}. Fix: give the instances different served_model_name values."
                )
            if (entry["api_key"] or None) != (instance.get("api_key") or None):
                problems.append(
                    f"{where}: the replicas of {model} have different api_key values; the gateway sends one key "
                    "per model. Fix: give them the same api_key."
                )
            entry["roles"].extend(role for role in roles if role not in entry["roles"])
            entry["servers"].append(
                {"host": host, "instance": name, "address": f"{_bracket(address)}:{int(instance.get('port'))}"}
            )
    result = []
    for index, model in enumerate(sorted(models)):
        entry = models[model]
        addresses = [server["address"] for server in entry["servers"]]
        duplicates = sorted({address for address in addresses if addresses.count(address) > 1})
        if duplicates:
            problems.append(f"{model}: two replicas have the same address {', '.join(duplicates)}.")
        entry["upstream"] = f"gpubox_m{index}"
        result.append(entry)
    return {"models": result, "problems": problems}


def _source(hostvars, gateway):
    """The address a gateway's connections come from, as its backends see them."""
    variables = _vars(hostvars, gateway)
    facts = _get(variables, "ansible_facts", {}) or {}
    default_ipv4 = facts.get("default_ipv4") or {}
    return _get(variables, "gateway_source_address") or default_ipv4.get("address")


def gateway_firewall(hostvars, gateway_hosts, backend_host, backend_hosts=None):
    """Rules for a serving host's firewall: each instance port a gateway routes to, open to that gateway only.

    ``backend_hosts`` is the default list of serving hosts of a gateway that does not set gateway_backend_hosts.
    Returns ``{"rules": [{"port", "proto", "sources", "comment"}], "problems": [...]}``.
    """
    if not is_sequence(gateway_hosts):
        raise AnsibleFilterError("gateway_firewall: gateway_hosts must be a list of inventory names")
    rules, problems = {}, []
    for gateway in gateway_hosts:
        if gateway == backend_host:
            continue  # the gateway's own instances are reached on loopback
        backends = _get(_vars(hostvars, gateway), "gateway_backend_hosts", backend_hosts or [])
        if backend_host not in backends:
            continue
        mine = [
            server
            for model in gateway_routes(hostvars, backends, gateway)["models"]
            for server in model["servers"]
            if server["host"] == backend_host
        ]
        if not mine:
            continue
        source = _source(hostvars, gateway)
        if not source:
            problems.append(
                f"{backend_host}: the address of gateway {gateway} is unknown, so the firewall cannot admit it. "
                f"Fix: gather {gateway}'s facts in the same run, or set gateway_source_address for it."
            )
            continue
        for server in mine:
            port = int(server["address"].rsplit(":", 1)[1])
            rule = rules.setdefault(
                port, {"port": port, "proto": "tcp", "sources": [], "comment": f"gpubox vllm@{server['instance']}"}
            )
            if source not in rule["sources"]:
                rule["sources"].append(source)
    return {"rules": [rules[port] for port in sorted(rules)], "problems": problems}


class FilterModule:
    def filters(self):
        return {"gateway_routes": gateway_routes, "gateway_firewall": gateway_firewall}
