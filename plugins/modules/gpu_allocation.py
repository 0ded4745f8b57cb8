#!/usr/bin/python
# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_allocation
short_description: Verify which systemd units and containers use which NVIDIA GPUs
description:
  - Reads the GPUs with C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits) and the processes that hold a
    CUDA context with C(nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory,process_name
    --format=csv,noheader,nounits).
  - Maps every such process to its owner through C(/proc/<pid>/cgroup) (cgroup v1, v2 and hybrid), either the
    systemd unit (for example C(vllm@chat.service), or a user unit below C(user@<uid>.service)) or the container
    (Docker, Podman, containerd, CRI-O, Kubernetes pods). A container wins over the unit around it
    (C(docker-<id>.scope)).
  - Compares the result with O(expect) and fails with one precise message per problem, such as
    C(vllm@chat uses GPU 2, expected 0,1), C(vllm@chat is on no GPU (expected 0,1)),
    C(vllm@chat uses 812 MiB on GPU 0, expected at least 20000), or, with O(forbid_foreign=true),
    C(foreign process 4242 (python3, session-3.scope) uses GPU 3).
  - Returns the per-GPU table of who uses what in RV(gpus) either way.
  - On a host without C(nvidia-smi), or where C(nvidia-smi) finds no GPU, the module returns RV(skipped=true) with
    the reason in RV(skip_reason) instead of failing.
  - The module only reads; it never changes the host.
version_added: "0.1.0"
options:
  expect:
    description:
      - Who must use which GPUs. Each entry names one owner, either O(expect[].unit) or O(expect[].container).
      - An owner must have processes on every GPU in O(expect[].gpus) and on no other GPU.
    type: list
    elements: dict
    default: []
    suboptions:
      unit:
        description:
          - A systemd unit. V(.service) is added when the name has no unit type suffix, so V(vllm@chat) means
            V(vllm@chat.service).
          - Mutually exclusive with O(expect[].container).
        type: str
      container:
        description:
          - A container name or ID (or a unique prefix of the ID, as C(docker ps) prints it).
          - A name is resolved to its ID with C(docker container inspect) (or C(podman container inspect)) when that
            CLI exists, see O(container_cli). Without it, the value must be an ID or ID prefix (hexadecimal) and is
            matched against the container IDs found in the processes' cgroups.
          - Mutually exclusive with O(expect[].unit).
        type: str
      gpus:
        description:
          - The GPUs, as nvidia-smi indices (V(0)) or GPU UUIDs (V(GPU-8623121d-...)); both may be mixed.
          - MIG device UUIDs (V(MIG-...)) are not accepted; give the parent GPU.
        type: list
        elements: raw
        required: true
      min_memory_mib:
        description:
          - Least GPU memory in MiB the owner's processes must use on each of its GPUs, a sign that the model is
            loaded and not just a CUDA context.
          - When C(nvidia-smi) reports the processes' memory as V([N/A]) (some MIG setups) the check is skipped
            with a warning.
        type: int
  forbid_foreign:
    description:
      - Fail when a process that belongs to none of O(expect) uses a GPU.
      - Such processes are always returned in RV(foreign).
    type: bool
    default: false
  nvidia_smi_path:
    description:
      - Path to the C(nvidia-smi) executable.
      - By default C(nvidia-smi) is looked up in E(PATH) and the usual system directories.
      - A path that does not exist is treated like a missing C(nvidia-smi) (the module skips).
    type: path
  proc_path:
    description:
      - Mount point of procfs. Only tests change it.
    type: path
    default: /proc
  container_cli:
    description:
      - C(docker) or C(podman) executable used to resolve container names to IDs, and IDs to names for the
        output.
      - By default C(docker), then C(podman), is looked up. When neither exists, names cannot be resolved and
        containers are known by ID only.
    type: path
notes:
  - Run it on the host. C(nvidia-smi) reports host PIDs; from inside a container with its own PID namespace those
    PIDs are not under C(/proc) and their owners stay unknown (the module says so).
  - The PIDs are read at one moment; a process that exits between the C(nvidia-smi) call and the C(/proc) lookup
    has no known owner.
  - C(nvidia-smi) output is not guaranteed to be stable across driver releases; all parsing lives in the
    C(gpubox.llm.nvidia_smi) module utility, and the cgroup parsing in C(gpubox.llm.proc_cgroup).
seealso:
  - module: gpubox.llm.gpu_info
  - name: nvidia-smi documentation
    description: NVIDIA System Management Interface manual (C(--query-compute-apps)).
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
  - name: cgroups(7)
    description: The format of C(/proc/<pid>/cgroup).
    link: https://man7.org/linux/man-pages/man7/cgroups.7.html
author:
  - gpubox.llm maintainers (@gpubox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module is read-only and runs the same commands in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
---
- name: Two vLLM instances on a 4x L40S box, each on its own pair of GPUs
  gpubox.llm.gpu_allocation:
    expect:
      - unit: vllm@chat
        gpus: [0, 1]
        min_memory_mib: 20000
      - unit: vllm@coder
        gpus: [2, 3]

- name: A container by name, a GPU by UUID, and nothing else on the GPUs
  gpubox.llm.gpu_allocation:
    expect:
      - container: vllm-llama70b
        gpus: [0, 1, 2, GPU-a913e53d-541b-a008-3c68-bda4e43e6dac]
    forbid_foreign: true

- name: Only report who uses which GPU
  gpubox.llm.gpu_allocation:
  register: allocation

- name: Show the table
  ansible.builtin.debug:
    msg: "GPU {{ item.index }}: {{ item.processes | map(attribute='owner') | unique | join(', ') }}"
  loop: "{{ allocation.gpus }}"
  loop_control:
    label: "{{ item.index }}"
"""

RETURN = r"""
skipped:
  description: V(true) when the host has no C(nvidia-smi) or no GPU; nothing was checked.
  returned: when skipped
  type: bool
  sample: true
skip_reason:
  description: Why the check was skipped.
  returned: when skipped
  type: str
  sample: nvidia-smi was not found (a host without the NVIDIA driver); no GPU allocation to verify
gpus:
  description: One entry per GPU, ordered by index, with the processes that have a CUDA context on it.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: The nvidia-smi GPU index.
      type: int
      returned: always
      sample: 0
    uuid:
      description: The GPU UUID.
      type: str
      returned: always
      sample: GPU-8623121d-e0bb-f37a-9459-4d8b75673fca
    name:
      description: The product name.
      type: str
      returned: always
      sample: NVIDIA L40S
    memory_total_mib:
      description: Total GPU memory in MiB.
      type: int
      returned: always
      sample: 46068
    used_memory_mib:
      description: GPU memory in use in MiB, for the whole GPU (C(memory.used)).
      type: int
      returned: always
      sample: 41520
    processes:
      description: The processes on this GPU.
      type: list
      elements: dict
      returned: always
      contains:
        pid:
          description: Host PID.
          type: int
          returned: always
          sample: 48213
        process_name:
          description: Name as C(nvidia-smi) prints it (vLLM workers are C(VLLM::Worker_TP<n>)), else C(comm).
          type: str
          returned: always
          sample: VLLM::Worker_TP0
        used_memory_mib:
          description: GPU memory of this process on this GPU in MiB; V(null) when C(nvidia-smi) prints V([N/A]).
          type: int
          returned: always
          sample: 40986
        owner:
          description: The unit name, the container name (or 12-character ID), or V(null) when unknown.
          type: str
          returned: always
          sample: vllm@chat.service
        owner_type:
          description: V(unit), V(container) or V(none).
          type: str
          returned: always
          sample: unit
        unit:
          description: The systemd unit (for a container, V(null)).
          type: str
          returned: always
          sample: vllm@chat.service
        container_id:
          description: Full container ID, V(null) outside containers.
          type: str
          returned: always
          sample: null
        container_name:
          description: Container name when the container CLI knows it.
          type: str
          returned: always
          sample: null
        runtime:
          description: V(docker), V(podman), V(containerd), V(cri-o) or V(container) (unknown), for containers.
          type: str
          returned: always
          sample: null
        pod_uid:
          description: Kubernetes pod UID for containers of a pod.
          type: str
          returned: always
          sample: null
        cgroup:
          description: The cgroup path the owner was read from.
          type: str
          returned: always
          sample: /system.slice/system-vllm.slice/vllm@chat.service
        owner_unknown_reason:
          description: Why the owner is unknown (RV(gpus[].processes[].owner_type=none)).
          type: str
          returned: always
          sample: null
        expected_by:
          description: The O(expect) entry this process belongs to, by its label, or V(null) for a foreign process.
          type: str
          returned: always
          sample: vllm@chat
owners:
  description: One entry per O(expect) entry, in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Label used in messages (unit without V(.service), or C(container <name>)).
      type: str
      returned: always
      sample: vllm@chat
    unit:
      description: The expected unit, with its type suffix; V(null) for a container.
      type: str
      returned: always
      sample: vllm@chat.service
    container:
      description: The expected container as given; V(null) for a unit.
      type: str
      returned: always
      sample: null
    container_id:
      description: The container ID (or the ID prefix given) the container was matched by.
      type: str
      returned: always
      sample: null
    expected_gpus:
      description: Expected GPU indices (UUIDs translated).
      type: list
      elements: int
      returned: always
      sample: [0, 1]
    gpus_seen:
      description: GPU indices where the owner has processes.
      type: list
      elements: int
      returned: always
      sample: [0, 1]
    pids:
      description: The owner's GPU processes.
      type: list
      elements: int
      returned: always
      sample: [48213, 48214]
    gpu_memory:
      description: Memory of the owner's processes on each GPU it uses.
      type: list
      elements: dict
      returned: always
      contains:
        index:
          description: GPU index.
          type: int
          returned: always
          sample: 0
        used_memory_mib:
          description: Sum over the owner's processes on that GPU in MiB; V(null) when C(nvidia-smi) reports V([N/A]).
          type: int
          returned: always
          sample: 40986
      sample: [{index: 0, used_memory_mib: 40986}, {index: 1, used_memory_mib: 40986}]
    ok:
      description: Whether this owner is allocated as expected.
      type: bool
      returned: always
      sample: true
    problems:
      description: This owner's problems.
      type: list
      elements: str
      returned: always
      sample: []
foreign:
  description: Processes on GPUs that belong to no O(expect) entry, one per process and GPU.
  returned: always
  type: list
  elements: dict
  sample:
    - {pid: 4242, gpu_index: 3, gpu_uuid: GPU-46f14170-5930-0965-c313-063d20dd02f4, process_name: python3,
       owner: session-3.scope, owner_type: unit, used_memory_mib: 1402}
problems:
  description: Every problem found; the task fails when this is not empty.
  returned: always
  type: list
  elements: str
  sample: ["vllm@chat uses GPU 2, expected 0,1"]
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_smi import (
    QUERY_COMPUTE_APPS_FIELDS,
    QUERY_GPU_FIELDS,
    QUERY_GPU_FORMAT,
    NvidiaSmiError,
    check_result,
    gpu_index_by_uuid,
    parse_query_compute_apps,
    parse_query_gpu,
)
from ansible_collections.gpubox.llm.plugins.module_utils.proc_cgroup import (
    normalize_unit,
    read_comm,
    read_pid_owner,
    short_id,
    unit_label,
)

_HEX_PREFIX_RE = re.compile(r"^[0-9a-f]{4,64}$")
_INDEX_RE = re.compile(r"^\d+$")


def fmt(indices):
    return ",".join(str(i) for i in indices)


def gpu_word(indices):
    return "GPU" if len(indices) == 1 else "GPUs"


def failure_message(error):
    hint = getattr(error, "hint", None)
    return f"{error} {hint}" if hint else str(error)


class Expectation:
    """One validated O(expect) entry."""

    def __init__(self, position, item):
        self.where = f"expect[{position}]"
        unit, container = item.get("unit"), item.get("container")
        unit = unit.strip() if isinstance(unit, str) and unit.strip() else None
        container = container.strip() if isinstance(container, str) and container.strip() else None
        if unit and container:
            raise ValueError(
                f"{self.where}: give either unit or container, not both (unit={unit}, container={container})"
            )
        if not unit and not container:
            raise ValueError(
                f"{self.where}: give unit (a systemd unit such as vllm@chat.service) or container (a container name "
                "or ID)"
            )
        self.unit = normalize_unit(unit) if unit else None
        self.container = container
        self.name = unit_label(self.unit) if unit else f"container {container}"
        self.container_id = None  # resolved ID or ID prefix
        self.resolve_problem = None
        self.raw_gpus = self._check_gpus(item.get("gpus"))
        self.min_memory_mib = item.get("min_memory_mib")
        if self.min_memory_mib is not None and self.min_memory_mib < 0:
            raise ValueError(f"{self.where} ({self.name}): min_memory_mib must not be negative")
        self.gpus = []

    def _check_gpus(self, gpus):
        if not gpus:
            raise ValueError(f"{self.where} ({self.name}): gpus must list at least one GPU index or UUID")
        checked = []
        for value in gpus:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(f"{self.where} ({self.name}): {value!r} is neither a GPU index nor a GPU UUID")
            text = str(value).strip()
            if _INDEX_RE.match(text):
                checked.append(int(text))
            elif text.upper().startswith("MIG-"):
                raise ValueError(
                    f"{self.where} ({self.name}): {text} is a MIG device; give the parent GPU's index or UUID"
                )
            elif text.upper().startswith("GPU-"):
                checked.append(text)
            else:
                raise ValueError(
                    f"{self.where} ({self.name}): {value!r} is neither a GPU index nor a GPU UUID (GPU-...)"
                )
        return checked

    def resolve_gpus(self, gpus):
        """Translate indices and UUIDs to indices; raise ValueError for GPUs the host does not have."""
        indices = [g["index"] for g in gpus]
        by_uuid = gpu_index_by_uuid(gpus)
        resolved = set()
        for value in self.raw_gpus:
            if isinstance(value, int):
                if value not in indices:
                    raise ValueError(
                        f"{self.where} ({self.name}): GPU {value} does not exist; nvidia-smi lists GPUs {fmt(indices)}"
                    )
                resolved.add(value)
            else:
                if value.lower() not in by_uuid:
                    raise ValueError(
                        f"{self.where} ({self.name}): no GPU has UUID {value}; nvidia-smi lists "
                        + ", ".join(f"{g['index']}: {g['uuid']}" for g in gpus)
                    )
                resolved.add(by_uuid[value.lower()])
        self.gpus = sorted(resolved)

    def owns(self, owner):
        if self.unit:
            return owner["type"] == "unit" and owner["unit"] == self.unit
        return bool(
            self.container_id and owner["type"] == "container" and owner["container_id"].startswith(self.container_id)
        )


class ContainerCli:
    """docker/podman, for names <-> IDs. Every call is best effort."""

    def __init__(self, module, path):
        self.module = module
        self.path = path

    def resolve(self, value):
        """Return (container_id or prefix, problem)."""
        lowered = value.lower()
        if self.path:
            rc, out, err = self.module.run_command(
                [self.path, "container", "inspect", "--format", "{{.Id}}", value], check_rc=False
            )
            found = out.strip().splitlines()
            if rc == 0 and found and re.match(r"^[0-9a-f]{64}$", found[0].strip()):
                return found[0].strip(), None
            if _HEX_PREFIX_RE.match(lowered):
                return lowered, None
            detail = (err or out).strip().replace("\n", " / ") or f"rc={rc}"
            cli = os.path.basename(self.path)
            return None, f"container {value}: {cli} knows no such container ({detail})"
        if _HEX_PREFIX_RE.match(lowered):
            return lowered, None
        return None, (
            f"container {value}: a container name needs the docker or podman CLI to be resolved, and neither was "
            "found; give the container ID (or its first 12 characters) instead"
        )

    def names(self, ids):
        """{container_id: name} for the IDs the CLI knows."""
        if not self.path or not ids:
            return {}
        _rc, out, _err = self.module.run_command(
            [self.path, "container", "inspect", "--format", "{{.Id}} {{.Name}}", *sorted(ids)], check_rc=False
        )
        names = {}
        for line in out.splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and parts[0] in ids:
                names[parts[0]] = parts[1].lstrip("/")
        return names


def find_container_cli(module):
    path = module.params["container_cli"]
    if path:
        if not os.path.exists(path):
            module.warn(f"container_cli {path} does not exist; containers are known by ID only")
            return None
        return path
    return module.get_bin_path("docker") or module.get_bin_path("podman")


def skip(module, reason):
    module.exit_json(
        changed=False,
        skipped=True,
        skip_reason=reason,
        msg=reason,
        gpus=[],
        owners=[],
        foreign=[],
        problems=[],
    )


def owner_description(process):
    if process["owner_type"] == "unit":
        return process["unit"]
    if process["owner_type"] == "container":
        return f"container {process['owner']}"
    return "owner unknown"


def build_processes(module, apps, by_uuid):
    """One entry per compute-apps line, with its owner (container names filled in by name_containers())."""
    proc = module.params["proc_path"]
    owners = {}
    processes = []
    for app in apps:
        pid = app["pid"]
        if pid not in owners:
            owners[pid] = read_pid_owner(pid, proc)
        owner = owners[pid]
        processes.append(
            {
                "pid": pid,
                "gpu_uuid": app["gpu_uuid"],
                "gpu_index": by_uuid.get(app["gpu_uuid"].lower()),
                "process_name": app["process_name"] or read_comm(pid, proc),
                "used_memory_mib": app["used_memory_mib"],
                "owner_type": owner["type"],
                "unit": owner["unit"],
                "container_id": owner["container_id"],
                "container_name": None,
                "runtime": owner["runtime"],
                "pod_uid": owner["pod_uid"],
                "cgroup": owner["cgroup"],
                "owner_unknown_reason": owner["reason"],
                "expected_by": None,
                "_owner": owner,
            }
        )
    return processes


def name_containers(processes, cli):
    """Fill in owner (and container_name, when the CLI knows it)."""
    container_ids = {p["container_id"] for p in processes if p["container_id"]}
    names = cli.names(container_ids) if container_ids else {}
    for process in processes:
        if process["owner_type"] == "unit":
            process["owner"] = process["unit"]
        elif process["owner_type"] == "container":
            process["container_name"] = names.get(process["container_id"])
            process["owner"] = process["container_name"] or short_id(process["container_id"])
        else:
            process["owner"] = None


def check_owner(expectation, processes, warnings, unknown=0):
    """Compare one expectation with its processes; return the owners[] entry."""
    mine = [p for p in processes if p["expected_by"] == expectation.name]
    seen = sorted({p["gpu_index"] for p in mine if p["gpu_index"] is not None})
    memory = []
    for index in seen:
        values = [p["used_memory_mib"] for p in mine if p["gpu_index"] == index]
        known = [v for v in values if v is not None]
        memory.append({"index": index, "used_memory_mib": sum(known) if known else None})
    problems = []
    name, expected = expectation.name, expectation.gpus
    if expectation.resolve_problem:
        problems.append(expectation.resolve_problem)
    elif not seen:
        hint = f"; {unknown} GPU process line(s) have no known owner, see the warnings" if unknown else ""
        problems.append(f"{name} is on no GPU (expected {fmt(expected)}{hint})")
    else:
        extra = [i for i in seen if i not in expected]
        missing = [i for i in expected if i not in seen]
        if extra:
            problems.append(f"{name} uses {gpu_word(extra)} {fmt(extra)}, expected {fmt(expected)}")
        if missing:
            problems.append(
                f"{name} is not on {gpu_word(missing)} {fmt(missing)} (expected {fmt(expected)}, uses {fmt(seen)})"
            )
        if expectation.min_memory_mib is not None:
            for entry in memory:
                if entry["index"] not in expected:
                    continue
                if entry["used_memory_mib"] is None:
                    warnings.append(
                        f"{name}: nvidia-smi does not report the memory of its processes on GPU {entry['index']} "
                        "([N/A]), so min_memory_mib was not checked there"
                    )
                elif entry["used_memory_mib"] < expectation.min_memory_mib:
                    problems.append(
                        f"{name} uses {entry['used_memory_mib']} MiB on GPU {entry['index']}, expected at least "
                        f"{expectation.min_memory_mib}"
                    )
    return {
        "name": name,
        "unit": expectation.unit,
        "container": expectation.container,
        "container_id": expectation.container_id,
        "expected_gpus": expected,
        "gpus_seen": seen,
        "pids": sorted({p["pid"] for p in mine}),
        "gpu_memory": memory,
        "ok": not problems,
        "problems": problems,
    }


def foreign_problems(foreign):
    """One message per foreign PID, with all its GPUs."""
    by_pid = {}
    for process in foreign:
        by_pid.setdefault(process["pid"], []).append(process)
    problems = []
    for pid, entries in by_pid.items():
        first = entries[0]
        indices = sorted({e["gpu_index"] for e in entries if e["gpu_index"] is not None})
        where = f"{gpu_word(indices)} {fmt(indices)}" if indices else f"GPU {first['gpu_uuid']}"
        problems.append(
            f"foreign process {pid} ({first['process_name'] or 'unknown name'}, {owner_description(first)}) "
            f"uses {where}"
        )
    return problems


def main():
    module = AnsibleModule(
        argument_spec=dict(
            expect=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    unit=dict(type="str"),
                    container=dict(type="str"),
                    gpus=dict(type="list", elements="raw", required=True),
                    min_memory_mib=dict(type="int"),
                ),
            ),
            forbid_foreign=dict(type="bool", default=False),
            nvidia_smi_path=dict(type="path"),
            proc_path=dict(type="path", default="/proc"),
            container_cli=dict(type="path"),
        ),
        supports_check_mode=True,
    )

    expectations = []
    try:
        for position, item in enumerate(module.params["expect"]):
            expectations.append(Expectation(position, item))
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    names = [e.name for e in expectations]
    for name in names:
        if names.count(name) > 1:
            module.fail_json(msg=f"{name} is expected more than once in expect; list each owner once")

    smi = module.params["nvidia_smi_path"]
    if smi and not os.path.exists(smi):
        module.warn(f"nvidia_smi_path {smi} does not exist")
        smi = None
    elif not smi:
        smi = module.get_bin_path("nvidia-smi")
    if not smi:
        skip(module, "nvidia-smi was not found (a host without the NVIDIA driver); no GPU allocation to verify")

    args = [smi, "--query-gpu=" + ",".join(QUERY_GPU_FIELDS), "--format=" + QUERY_GPU_FORMAT]
    rc, out, err = module.run_command(args)
    gpus = []
    try:
        gpus = parse_query_gpu(check_result(rc, out, err, command="nvidia-smi --query-gpu"))
    except NvidiaSmiError as exc:
        if getattr(exc, "kind", None) == "no_devices":
            skip(module, "nvidia-smi found no GPU (No devices were found); no GPU allocation to verify")
        module.fail_json(msg=failure_message(exc), rc=getattr(exc, "rc", None) or rc, stdout=out, stderr=err)
    if not gpus:
        skip(module, "nvidia-smi lists no GPU; no GPU allocation to verify")
    gpus.sort(key=lambda g: g["index"])

    try:
        for expectation in expectations:
            expectation.resolve_gpus(gpus)
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    args = [smi, "--query-compute-apps=" + ",".join(QUERY_COMPUTE_APPS_FIELDS), "--format=" + QUERY_GPU_FORMAT]
    rc, out, err = module.run_command(args)
    try:
        apps = parse_query_compute_apps(check_result(rc, out, err, command="nvidia-smi --query-compute-apps"))
    except NvidiaSmiError as exc:
        module.fail_json(msg=failure_message(exc), rc=getattr(exc, "rc", None) or rc, stdout=out, stderr=err)

    processes = build_processes(module, apps, gpu_index_by_uuid(gpus))
    # The container CLI only runs when containers are expected or seen.
    cli = ContainerCli(module, None)
    if any(e.container for e in expectations) or any(p["container_id"] for p in processes):
        cli = ContainerCli(module, find_container_cli(module))
    for expectation in expectations:
        if expectation.container:
            expectation.container_id, expectation.resolve_problem = cli.resolve(expectation.container)
    name_containers(processes, cli)

    for process in processes:
        for expectation in expectations:
            if expectation.owns(process["_owner"]):
                process["expected_by"] = expectation.name
                break

    warnings = []
    for process in processes:
        if process["gpu_index"] is None:
            warnings.append(
                f"nvidia-smi reports process {process['pid']} on GPU {process['gpu_uuid']}, which --query-gpu does "
                "not list"
            )
    unknown = [p for p in processes if p["owner_type"] == "none"]
    if unknown:
        reasons = sorted({p["owner_unknown_reason"] for p in unknown if p["owner_unknown_reason"]})
        warnings.append(
            f"{len({p['pid'] for p in unknown})} GPU process(es) have no known owner"
            + (f": {reasons[0]}" if reasons else "")
        )

    owners = [check_owner(e, processes, warnings, len(unknown)) for e in expectations]
    foreign = [p for p in processes if p["expected_by"] is None]
    problems = [problem for owner in owners for problem in owner["problems"]]
    if module.params["forbid_foreign"]:
        problems.extend(foreign_problems(foreign))
    for warning in warnings:
        module.warn(warning)

    table = []
    for gpu in gpus:
        table.append(
            {
                "index": gpu["index"],
                "uuid": gpu["uuid"],
                "name": gpu["name"],
                "memory_total_mib": gpu["memory_total_mib"],
                "used_memory_mib": gpu["memory_used_mib"],
                "processes": [
                    {k: v for k, v in p.items() if k not in ("_owner", "gpu_uuid", "gpu_index")}
                    for p in processes
                    if p["gpu_index"] == gpu["index"]
                ],
            }
        )
    foreign_out = [
        {
            "pid": p["pid"],
            "gpu_index": p["gpu_index"],
            "gpu_uuid": p["gpu_uuid"],
            "process_name": p["process_name"],
            "owner": p["owner"],
            "owner_type": p["owner_type"],
            "used_memory_mib": p["used_memory_mib"],
        }
        for p in foreign
    ]
    result = dict(changed=False, gpus=table, owners=owners, foreign=foreign_out, problems=problems)
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    if expectations:
        summary = "; ".join(f"{o['name']} on {gpu_word(o['gpus_seen'])} {fmt(o['gpus_seen'])}" for o in owners)
        msg = f"GPU allocation as expected: {summary}"
    else:
        msg = "Nothing expected; see gpus for who uses which GPU"
    if foreign_out:
        msg += f" ({len({p['pid'] for p in foreign_out})} foreign GPU process(es), see foreign)"
    module.exit_json(msg=msg, **result)


if __name__ == "__main__":
    main()
