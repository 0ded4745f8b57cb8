# Copyright: (c) 2025, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Who owns a process: its systemd unit or container, from ``/proc/<pid>/cgroup``.

Pure parsing plus two small readers that take the proc root as an argument, so that tests
can point them at a fake tree. ``/proc/<pid>/cgroup`` has one ``ID:CONTROLLERS:PATH`` line
per hierarchy (cgroups(7)):

* cgroup v2 (unified): a single ``0::/system.slice/system-vllm.slice/vllm@chat.service``;
* v1 (legacy): one line per controller, ``1:name=systemd:/system.slice/...`` carries the unit;
* hybrid: both, the ``0::`` line and the v1 lines.

Containers are recognized in any hierarchy, and win over the unit around them:

* ``docker-<64 hex>.scope`` (Docker with the systemd cgroup driver, under ``system.slice``);
* ``/docker/<64 hex>`` (Docker with the cgroupfs driver);
* ``libpod-<64 hex>.scope`` (Podman; ``libpod-conmon-*`` is its monitor, not the container),
  ``/libpod_parent/libpod-<64 hex>`` with cgroupfs;
* ``cri-containerd-<64 hex>.scope``, ``crio-<64 hex>.scope``, ``nerdctl-<64 hex>.scope``;
* Kubernetes: ``kubepods[.slice]/...pod<uid>...`` followed by one of the above or a bare
  ``<64 hex>`` component (cgroupfs driver); the pod UID is returned too.

Otherwise the owner is the first unit below the slices (``vllm@chat.service``,
``session-3.scope``, ``docker.service``); for a user manager (``user@1000.service``) it is
the user unit below it. Seen from the host's PID and cgroup namespaces (where the module
runs), PIDs that nvidia-smi reports for processes in containers are host PIDs, so they
resolve here.
"""

from __future__ import annotations

import os
import re

_HEX64 = r"[0-9a-f]{64}"
# prefix -> runtime, for <prefix>-<id>[.scope] components.
_SCOPE_RUNTIMES = {
    "docker": "docker",
    "libpod": "podman",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "nerdctl": "containerd",
}
_SCOPE_RE = re.compile(rf"^({'|'.join(re.escape(p) for p in _SCOPE_RUNTIMES)})-({_HEX64})(?:\.scope)?$")
_BARE_ID_RE = re.compile(rf"^{_HEX64}$")
_POD_RE = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$")
_UNIT_SUFFIXES = (".service", ".scope")
_USER_MANAGER_RE = re.compile(r"^user@\d+\.service$")
# systemd unit types, for "is this already a full unit name".
UNIT_TYPES = (
    ".service",
    ".scope",
    ".socket",
    ".target",
    ".slice",
    ".mount",
    ".automount",
    ".swap",
    ".timer",
    ".path",
    ".device",
)


def parse_cgroup_file(text):
    """Split ``/proc/<pid>/cgroup`` text into ``(hierarchy_id, controllers, path)`` tuples.

    ``controllers`` is a tuple (empty for the v2 line ``0::``). Malformed lines are skipped.
    """
    entries = []
    for line in (text or "").splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        hierarchy, controllers, path = parts
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        entries.append((hierarchy, tuple(c for c in controllers.split(",") if c), path))
    return entries


def _none(cgroup=None, reason=None):
    return {
        "type": "none",
        "unit": None,
        "user_unit": False,
        "container_id": None,
        "runtime": None,
        "pod_uid": None,
        "cgroup": cgroup,
        "reason": reason,
    }


def container_from_path(path):
    """Return ``(runtime, container_id, pod_uid)`` when ``path`` is inside a container, else None."""
    parts = [p for p in path.split("/") if p]
    pod_uid = None
    for position, part in enumerate(parts):
        pod = _POD_RE.search(part)
        if pod and "kubepods" in "/".join(parts[: position + 1]):
            pod_uid = pod.group(1).replace("_", "-")
            continue
        match = _SCOPE_RE.match(part)
        if match:
            return _SCOPE_RUNTIMES[match.group(1)], match.group(2), pod_uid
        if _BARE_ID_RE.match(part):
            parents = parts[:position]
            if "docker" in parents:
                runtime = "docker"
            elif "libpod_parent" in parents:
                runtime = "podman"
            else:
                runtime = "container"
            return runtime, part, pod_uid
    return None


def unit_from_path(path):
    """Return ``(unit, user_unit)`` for the unit owning ``path``, or ``(None, False)``."""
    parts = [p for p in path.split("/") if p and not p.endswith(".slice")]
    for position, part in enumerate(parts):
        if not part.endswith(_UNIT_SUFFIXES):
            continue
        if _USER_MANAGER_RE.match(part):
            for inner in parts[position + 1 :]:
                if inner.endswith(_UNIT_SUFFIXES):
                    return inner, True
        return part, False
    return None, False


def classify_cgroup_path(path):
    """Owner of one cgroup path: a dict as returned by owner_from_cgroup()."""
    found = container_from_path(path)
    if found:
        owner = _none(cgroup=path)
        owner.update(type="container", runtime=found[0], container_id=found[1], pod_uid=found[2])
        return owner
    unit, user_unit = unit_from_path(path)
    if unit:
        owner = _none(cgroup=path)
        owner.update(type="unit", unit=unit, user_unit=user_unit)
        return owner
    return _none(cgroup=path, reason=f"cgroup {path} belongs to no systemd unit or container")


def owner_from_cgroup(text):
    """The owner of a process from its ``/proc/<pid>/cgroup`` text.

    Returns a dict: ``type`` (``unit``, ``container`` or ``none``), ``unit``, ``user_unit``,
    ``container_id`` (64 hex), ``runtime`` (``docker``, ``podman``, ``containerd``,
    ``cri-o`` or ``container`` when unknown), ``pod_uid`` (Kubernetes), ``cgroup`` (the path
    the answer comes from) and ``reason`` (why the type is ``none``).
    """
    entries = parse_cgroup_file(text)
    if not entries:
        return _none(reason="no cgroup information")
    # A container in any hierarchy wins: on hybrid hosts with the cgroupfs driver only the v1
    # controllers may show it.
    for _hierarchy, _controllers, path in entries:
        if container_from_path(path):
            return classify_cgroup_path(path)
    unified = [path for hierarchy, controllers, path in entries if hierarchy == "0" and not controllers]
    named = [path for _h, controllers, path in entries if "name=systemd" in controllers]
    others = [path for _h, _c, path in entries]
    for path in unified + named + others:
        owner = classify_cgroup_path(path)
        if owner["type"] != "none":
            return owner
    path = (unified + named + others)[0]
    return _none(cgroup=path, reason=f"cgroup {path} belongs to no systemd unit or container")


def read_pid_owner(pid, proc_root="/proc"):
    """owner_from_cgroup() for ``<proc_root>/<pid>/cgroup``; type ``none`` when unreadable."""
    path = os.path.join(proc_root, str(int(pid)), "cgroup")
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        return _none(
            reason=f"{path} does not exist: the process exited, or its PID belongs to another PID namespace "
            "(run the check on the host, not in a container)"
        )
    except OSError as exc:
        return _none(reason=f"cannot read {path}: {exc.strerror or exc}")
    return owner_from_cgroup(text)


def read_comm(pid, proc_root="/proc"):
    """The process's ``comm`` (short command name), or None."""
    try:
        with open(os.path.join(proc_root, str(int(pid)), "comm")) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def normalize_unit(name):
    """``vllm@chat`` -> ``vllm@chat.service``; names with a unit type suffix stay as given."""
    name = str(name).strip()
    return name if name.endswith(UNIT_TYPES) else name + ".service"


def unit_label(unit):
    """A unit for messages: ``vllm@chat.service`` -> ``vllm@chat``; other types keep their suffix."""
    return unit[: -len(".service")] if unit and unit.endswith(".service") else unit


def short_id(container_id):
    """The 12-character form Docker prints."""
    return container_id[:12] if container_id else container_id
