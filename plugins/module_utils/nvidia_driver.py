# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Read-only state of the NVIDIA driver on a host: Secure Boot, the loaded kernel module, the
installed userspace, drift between the two, nouveau, containers, kernel release and headers.

Runs on targets: standard library only. Every function takes the root of the tree it reads
(``sysfs_path``, ``procfs_path``, ``root_path``) so that tests and chroots can point it elsewhere,
and nothing here runs a command: the one command that can help (``mokutil --sb-state``) is run by
the caller and handed over as a function.
"""

from __future__ import annotations

import os
import re

# EFI global variable GUID (UEFI specification): SecureBoot, SetupMode, ...
EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SECURE_BOOT_VAR = "SecureBoot-" + EFI_GLOBAL_GUID
SETUP_MODE_VAR = "SetupMode-" + EFI_GLOBAL_GUID

# Where libnvidia-ml.so.<version> is installed: Debian/Ubuntu multiarch, EL, plain /usr/lib, the
# NVIDIA container toolkit's /usr/local/nvidia. Debian's own packages put the libraries one level
# down, in <multiarch dir>/nvidia/current (and nvidia/tesla-<branch> for the Tesla variants), so
# the nvidia/* subdirectories of each are searched too.
LIBRARY_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "usr/local/nvidia/lib64",
)
_NVML = re.compile(r"^libnvidia-ml\.so\.(\d+\.\d+(?:\.\d+)?)$")

# /proc/driver/nvidia/version, first line. Real examples:
#   NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build  (dvs-builder@...)  <date>
#   NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  Wed Jul 16 ... UTC 2025
#   NVRM version: NVIDIA UNIX Kernel Module for aarch64  535.104.05  ...
_NVRM = re.compile(
    r"NVRM version:\s+NVIDIA UNIX\s+(?P<open>Open\s+)?(?:[\w-]+\s+)?Kernel Module(?:\s+for\s+\S+)?\s+"
    r"(?P<version>\d+\.\d+(?:\.\d+)?)"
)
_VERSION = re.compile(r"^\s*(\d+\.\d+(?:\.\d+)?)\s*$")

# container= values in PID 1's environment, and cgroup path markers, by container type.
_CGROUP_MARKERS = (("kubepods", "kubernetes"), ("docker", "docker"), ("libpod", "podman"), ("lxc", "lxc"))


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def version_key(version):
    """``"535.261.03"`` -> (535, 261, 3) for ordering; unparsable versions sort first."""
    try:
        return tuple(int(part) for part in version.split("."))
    except (AttributeError, ValueError):
        return ()


# --- Secure Boot ----------------------------------------------------------------------------------


def parse_mokutil_sb_state(text):
    """What ``mokutil --sb-state`` printed (stdout and stderr) -> enabled, setup_mode, detail.

    ``enabled`` is True/False, or None when the output says nothing either way. Outputs handled:
    ``SecureBoot enabled``, ``SecureBoot disabled``, ``SecureBoot disabled`` + ``Platform is in
    Setup Mode``, ``This system doesn't support Secure Boot`` and ``EFI variables are not supported
    on this system`` (the last two: legacy BIOS, or no efivarfs, so no Secure Boot).
    """
    text = text or ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lower = text.lower()
    setup_mode = "setup mode" in lower
    enabled = None
    if re.search(r"secureboot enabled", lower):
        enabled = True
    elif re.search(r"secureboot disabled", lower):
        enabled = False
    elif "doesn't support secure boot" in lower or "does not support secure boot" in lower:
        enabled = False
    elif "efi variables are not supported" in lower:
        enabled = False
    detail = "; ".join(lines) if lines else "mokutil printed nothing"
    if enabled and "validation is disabled" in lower:
        detail += " (shim does not check signatures, so unsigned modules load)"
    return {"enabled": enabled, "setup_mode": setup_mode, "detail": detail}


def parse_efivar_secure_boot(data):
    """An efivarfs variable (4 bytes of attributes, then the data) -> True (1), False (0), None (bad)."""
    if not data or len(data) < 5:
        return None
    value = data[4]
    if value not in (0, 1):
        return None
    return value == 1


def _efivar(sysfs_path, name):
    """A boolean EFI variable: efivarfs first, then the old sysfs efi/vars interface; None if unreadable."""
    value = parse_efivar_secure_boot(_read_bytes(os.path.join(sysfs_path, "firmware", "efi", "efivars", name)))
    if value is not None:
        return value
    data = _read_bytes(os.path.join(sysfs_path, "firmware", "efi", "vars", name, "data"))
    if data and data[0] in (0, 1):
        return data[0] == 1
    return None


def _has_entries(path):
    try:
        return bool(os.listdir(path))
    except OSError:
        return False


def secure_boot_state(sysfs_path="/sys", mokutil_runner=None):
    """Secure Boot state: enabled (True/False/None), setup_mode, source, detail.

    * no ``<sysfs>/firmware/efi``: legacy BIOS boot, no Secure Boot (source ``bios``);
    * the SecureBoot EFI variable readable: its value (source ``efivars``); efivars that list other
      variables but no SecureBoot one mean firmware without Secure Boot;
    * else ``mokutil_runner()`` (returns the text mokutil printed, or None) when given (source
      ``mokutil``);
    * else unknown (enabled None, source ``unknown``).
    """
    efi = os.path.join(sysfs_path, "firmware", "efi")
    if not os.path.isdir(efi):
        return {
            "enabled": False,
            "setup_mode": False,
            "source": "bios",
            "detail": f"Booted by legacy BIOS (no {efi}): no Secure Boot.",
        }
    enabled = _efivar(sysfs_path, SECURE_BOOT_VAR)
    if enabled is not None:
        setup_mode = bool(_efivar(sysfs_path, SETUP_MODE_VAR))
        detail = "SecureBoot enabled" if enabled else "SecureBoot disabled"
        if setup_mode:
            detail += "; Platform is in Setup Mode"
        return {"enabled": enabled, "setup_mode": setup_mode, "source": "efivars", "detail": detail}
    efivars = os.path.join(efi, "efivars")
    if _has_entries(efivars) and not os.path.exists(os.path.join(efivars, SECURE_BOOT_VAR)):
        return {
            "enabled": False,
            "setup_mode": False,
            "source": "efivars",
            "detail": "UEFI firmware without a SecureBoot variable: no Secure Boot.",
        }
    if mokutil_runner is not None:
        text = mokutil_runner()
        if text is not None:
            state = parse_mokutil_sb_state(text)
            state["source"] = "mokutil"
            return state
    return {
        "enabled": None,
        "setup_mode": False,
        "source": "unknown",
        "detail": "UEFI boot, but the SecureBoot EFI variable is not readable (efivarfs not mounted?) "
        "and mokutil is not available.",
    }


# --- the loaded kernel module --------------------------------------------------------------------


def parse_sys_module_version(text):
    """``/sys/module/nvidia/version`` (``"535.261.03\\n"``) -> ``"535.261.03"``; None otherwise."""
    match = _VERSION.match(text or "")
    return match.group(1) if match else None


def parse_proc_driver_version(text):
    """``/proc/driver/nvidia/version`` -> version and flavour (``open``/``proprietary``); Nones if unknown."""
    match = _NVRM.search(text or "")
    if not match:
        return {"version": None, "flavour": None}
    return {"version": match.group("version"), "flavour": "open" if match.group("open") else "proprietary"}


def loaded_module(sysfs_path="/sys", procfs_path="/proc"):
    """The nvidia kernel module as loaded now: loaded, version, flavour (None when unknown)."""
    module_dir = os.path.join(sysfs_path, "module", "nvidia")
    sys_version = parse_sys_module_version(_read_text(os.path.join(module_dir, "version")))
    proc_text = _read_text(os.path.join(procfs_path, "driver", "nvidia", "version"))
    proc = parse_proc_driver_version(proc_text)
    loaded = os.path.isdir(module_dir) or proc_text is not None
    return {
        "loaded": loaded,
        "version": (sys_version or proc["version"]) if loaded else None,
        "flavour": proc["flavour"] if loaded else None,
    }


def nouveau_loaded(sysfs_path="/sys"):
    """Whether the nouveau module is loaded (``<sysfs>/module/nouveau`` exists)."""
    return os.path.isdir(os.path.join(sysfs_path, "module", "nouveau"))


# --- the installed userspace ---------------------------------------------------------------------


def _library_dirs(root_path):
    for relative in LIBRARY_DIRS:
        base = os.path.join(root_path, relative)
        yield base
        nested = os.path.join(base, "nvidia")
        try:
            children = sorted(os.listdir(nested))
        except OSError:
            continue
        for child in children:
            yield os.path.join(nested, child)


def installed_versions(root_path="/"):
    """Versions of every ``libnvidia-ml.so.<X.Y[.Z]>`` in the usual library directories, oldest first."""
    found = set()
    for directory in _library_dirs(root_path):
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            match = _NVML.match(entry)
            if match:
                found.add(match.group(1))
    return sorted(found, key=version_key)


def installed_userspace(root_path="/"):
    """``version`` (the highest installed libnvidia-ml, or None) and ``versions`` (all of them)."""
    versions = installed_versions(root_path)
    return {"version": versions[-1] if versions else None, "versions": versions}


def drift(loaded, installed, installed_versions=None):
    """Compare the loaded kernel module version with the installed userspace version.

    Returns ``drift`` (bool), ``state`` and ``message``. States:

    * ``in_sync``: same version;
    * ``mismatch``: both present, different versions; GPU programs fail with
      "Failed to initialize NVML: Driver/library version mismatch" until the modules are reloaded;
    * ``not_loaded``: userspace installed, kernel module not loaded (reboot or modprobe);
    * ``not_installed``: module loaded, no userspace library found;
    * ``absent``: neither.
    """
    if not loaded and not installed:
        state = "absent"
        message = "No NVIDIA driver: the nvidia kernel module is not loaded and no libnvidia-ml is installed."
    elif not loaded:
        state = "not_loaded"
        message = (
            f"NVIDIA userspace {installed} is installed but the nvidia kernel module is not loaded: reboot, or load "
            "it with 'modprobe nvidia' (nouveau must not hold the GPU, and with Secure Boot the module must be "
            "signed with an enrolled key)."
        )
    elif not installed:
        state = "not_installed"
        message = (
            f"The nvidia kernel module {loaded} is loaded but no libnvidia-ml userspace library was found: the "
            "driver was removed or installed outside the usual library directories. Reinstall it, then reboot."
        )
    elif version_key(loaded) == version_key(installed):
        state, message = "in_sync", f"The loaded kernel module and the installed userspace are both {loaded}."
    else:
        state = "mismatch"
        message = (
            f"The loaded nvidia kernel module is {loaded} but the installed userspace is {installed} (the driver "
            "was upgraded without a reboot). GPU programs fail with 'Failed to initialize NVML: Driver/library "
            "version mismatch' until the new module is loaded: reboot, or stop every GPU process and reload the "
            "modules (rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia; modprobe nvidia)."
        )
    if installed_versions and len(installed_versions) > 1:
        listed = ", ".join(installed_versions)
        message += f" Several libnvidia-ml versions are installed ({listed}): leftovers of an older driver?"
    return {"drift": state not in ("in_sync", "absent"), "state": state, "message": message}


# --- containers, kernel ------------------------------------------------------------------------


def container_state(root_path="/", procfs_path="/proc"):
    """Whether this runs in a container, and which kind (read-only heuristics).

    ``/.dockerenv`` (docker), ``/run/.containerenv`` (podman), ``/run/systemd/container`` (what
    systemd was told), ``container=`` in PID 1's environment (systemd-nspawn, lxc, podman, ...), a
    Kubernetes service account or ``KUBERNETES_SERVICE_HOST``, or PID 1's cgroup naming kubepods,
    docker, libpod or lxc. Returns ``container`` (bool) and ``type`` (None outside a container).
    """
    if os.path.exists(os.path.join(root_path, ".dockerenv")):
        return {"container": True, "type": "docker"}
    if os.path.exists(os.path.join(root_path, "run", ".containerenv")):
        return {"container": True, "type": "podman"}
    told = (_read_text(os.path.join(root_path, "run", "systemd", "container")) or "").strip()
    if told:
        return {"container": True, "type": told}
    environ = _read_bytes(os.path.join(procfs_path, "1", "environ"))
    if environ:
        items = environ.split(b"\0")
        for item in items:
            if item.startswith(b"container="):
                value = item.split(b"=", 1)[1].decode("utf-8", "replace").strip()
                return {"container": True, "type": value or "unknown"}
        if any(item.startswith(b"KUBERNETES_SERVICE_HOST=") for item in items):
            return {"container": True, "type": "kubernetes"}
    if os.path.isdir(os.path.join(root_path, "run", "secrets", "kubernetes.io")):
        return {"container": True, "type": "kubernetes"}
    cgroup = _read_text(os.path.join(procfs_path, "1", "cgroup")) or ""
    for marker, kind in _CGROUP_MARKERS:
        if marker in cgroup:
            return {"container": True, "type": kind}
    return {"container": False, "type": None}


def kernel_release(procfs_path="/proc"):
    """The running kernel release (``<proc>/sys/kernel/osrelease``), None when unreadable."""
    text = _read_text(os.path.join(procfs_path, "sys", "kernel", "osrelease"))
    return (text.strip() or None) if text else None


def headers_installed(release, modules_path="/lib/modules", root_path="/"):
    """Whether the build tree for kernel ``release`` is there (``<modules_path>/<release>/build``).

    ``build`` is usually a symlink into /usr/src (on EL it ships with the kernel and dangles until
    kernel-devel is installed). An absolute link target is looked up under ``root_path``.
    """
    if not release:
        return False
    path = os.path.join(modules_path, release, "build")
    if os.path.islink(path):
        target = os.readlink(path)
        if os.path.isabs(target):
            target = os.path.join(root_path, target.lstrip("/"))
        else:
            target = os.path.join(os.path.dirname(path), target)
        return os.path.isdir(target)
    return os.path.isdir(path)
