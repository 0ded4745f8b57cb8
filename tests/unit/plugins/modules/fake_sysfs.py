"""Fake sysfs, procfs and root trees of a GPU host, for tests of gpubox.llm.nvidia_driver_facts and the
roles that use it.

``make_host(tmp_path, ...)`` builds a whole host and returns the module options pointing at it::

    paths = make_host(tmp_path, gpus=[{"device_id": "0x2330"}] * 8, nvswitches=[{}] * 4,
                      secure_boot=True, loaded_version="570.124.06", installed_version="570.124.06")
    result, failed = run_module(nvidia_driver_facts.main, paths)

The smaller functions (``add_pci_device``, ``add_gpu``, ``add_nvswitch``, ``add_efivars``,
``add_loaded_driver``, ``add_userspace``, ...) fill in one part each, for tests that need something
``make_host`` does not do. Values are written the way the kernel writes them ("0x10de\\n",
"16.0 GT/s PCIe\\n").
"""

from __future__ import annotations

import os
import struct

NVIDIA = "0x10de"
EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
# Attributes of SecureBoot/SetupMode in efivarfs: BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
EFI_VARIABLE_ATTRIBUTES = 0x06

# Link speed strings as current kernels print them, by PCIe generation.
LINK_SPEEDS = {
    1: "2.5 GT/s PCIe",
    2: "5.0 GT/s PCIe",
    3: "8.0 GT/s PCIe",
    4: "16.0 GT/s PCIe",
    5: "32.0 GT/s PCIe",
    6: "64.0 GT/s PCIe",
}

PROC_VERSION_LINES = {
    "open": (
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {version}  Release Build  "
        "(dvs-builder@U16-I1-N07-12-3)  Fri Feb 28 01:02:03 UTC 2025\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    ),
    "proprietary": (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Wed Jul 16 18:21:45 UTC 2025\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    ),
}


def _write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as handle:
        handle.write(text)


def _hex(value, digits=4):
    """``0x2330``, ``"0x2330"`` or ``"2330"`` -> ``"0x2330"``."""
    if isinstance(value, int):
        return f"0x{value:0{digits}x}"
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _speed(value):
    if value is None:
        return None
    return LINK_SPEEDS[value] if isinstance(value, int) else value


def add_pci_device(
    sysfs,
    address,
    *,
    vendor=NVIDIA,
    device="0x2330",
    pci_class="0x030200",
    subsystem_vendor=NVIDIA,
    subsystem_device="0x16c1",
    numa_node=0,
    current_link_speed=4,
    max_link_speed=4,
    current_link_width=16,
    max_link_width=16,
    driver=None,
):
    """One device directory under ``<sysfs>/bus/pci/devices/<address>``.

    Link speeds are a PCIe generation (int) or the sysfs text; None leaves the attribute out.
    ``driver`` makes the ``driver`` symlink point at ``<sysfs>/bus/pci/drivers/<driver>``.
    Returns the device directory.
    """
    path = os.path.join(str(sysfs), "bus", "pci", "devices", address)
    os.makedirs(path, exist_ok=True)
    values = {
        "vendor": _hex(vendor),
        "device": _hex(device),
        "class": _hex(pci_class, 6),
        "subsystem_vendor": _hex(subsystem_vendor) if subsystem_vendor is not None else None,
        "subsystem_device": _hex(subsystem_device) if subsystem_device is not None else None,
        "numa_node": str(numa_node) if numa_node is not None else None,
        "current_link_speed": _speed(current_link_speed),
        "max_link_speed": _speed(max_link_speed),
        "current_link_width": str(current_link_width) if current_link_width is not None else None,
        "max_link_width": str(max_link_width) if max_link_width is not None else None,
    }
    for name, value in values.items():
        if value is not None:
            _write(os.path.join(path, name), value + "\n")
    if driver:
        target = os.path.join(str(sysfs), "bus", "pci", "drivers", driver)
        os.makedirs(target, exist_ok=True)
        os.symlink(target, os.path.join(path, "driver"))
    return path


def gpu_address(index):
    """Addresses handed out to GPUs without one: 0000:01:00.0, 0000:02:00.0, ..."""
    return f"0000:{index + 1:02x}:00.0"


def add_gpu(sysfs, index=0, device_id="0x2330", *, address=None, pci_class="0x030200", audio=False, **attributes):
    """A GPU (display class) at ``address`` (default ``gpu_address(index)``); ``attributes`` go to add_pci_device.

    ``audio=True`` adds the board's HD audio function (function 1, class 0x0403), which is not a GPU.
    Returns the address.
    """
    address = address or gpu_address(index)
    add_pci_device(sysfs, address, device=device_id, pci_class=pci_class, **attributes)
    if audio:
        add_pci_device(
            sysfs,
            address[:-1] + "1",
            device="0x22ba",
            pci_class="0x040300",
            current_link_speed=None,
            max_link_speed=None,
            current_link_width=None,
            max_link_width=None,
        )
    return address


def add_nvswitch(sysfs, index=0, device_id="0x22a3", *, address=None, **attributes):
    """An NVSwitch (class 0x0680) at ``address`` (default 0000:c<index>:00.0). Returns the address."""
    address = address or f"0000:{0xC0 + index:02x}:00.0"
    attributes.setdefault("current_link_width", 2)
    attributes.setdefault("max_link_width", 2)
    add_pci_device(sysfs, address, device=device_id, pci_class="0x068000", **attributes)
    return address


def efivar_bytes(value, attributes=EFI_VARIABLE_ATTRIBUTES):
    """An efivarfs file: 4 bytes of attributes (little endian), then the data byte."""
    return struct.pack("<I", attributes) + bytes([value])


def add_efi(sysfs):
    """``<sysfs>/firmware/efi`` (a UEFI boot) with an empty efivars directory. Returns efivars."""
    efivars = os.path.join(str(sysfs), "firmware", "efi", "efivars")
    os.makedirs(efivars, exist_ok=True)
    return efivars


def add_efivars(sysfs, secure_boot=True, setup_mode=False, other=True):
    """A UEFI boot with SecureBoot and SetupMode variables (None leaves a variable out).

    ``other`` adds an unrelated variable too, as real firmware has plenty.
    """
    efivars = add_efi(sysfs)
    variables = {"SecureBoot": secure_boot, "SetupMode": setup_mode}
    if other:
        variables["Timeout"] = 5
    for name, value in variables.items():
        if value is None:
            continue
        with open(os.path.join(efivars, f"{name}-{EFI_GLOBAL_GUID}"), "wb") as handle:
            handle.write(efivar_bytes(int(value)))
    return efivars


def add_loaded_driver(sysfs, procfs, version="570.124.06", flavour="open"):
    """The nvidia module as loaded: ``<sysfs>/module/nvidia/version`` and ``<procfs>/driver/nvidia/version``."""
    _write(os.path.join(str(sysfs), "module", "nvidia", "version"), version + "\n")
    _write(
        os.path.join(str(procfs), "driver", "nvidia", "version"), PROC_VERSION_LINES[flavour].format(version=version)
    )


def add_nouveau(sysfs):
    """The nouveau module, loaded."""
    os.makedirs(os.path.join(str(sysfs), "module", "nouveau"), exist_ok=True)


def add_userspace(root, version="570.124.06", libdir="usr/lib/x86_64-linux-gnu"):
    """``<root>/<libdir>/libnvidia-ml.so.<version>`` plus the ``.so.1`` link. Returns the library path."""
    directory = os.path.join(str(root), libdir)
    os.makedirs(directory, exist_ok=True)
    library = os.path.join(directory, f"libnvidia-ml.so.{version}")
    _write(library, "")
    link = os.path.join(directory, "libnvidia-ml.so.1")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.basename(library), link)
    return library


def add_container(root, procfs, kind="docker"):
    """Container markers: docker (/.dockerenv), podman (/run/.containerenv), else ``container=<kind>``."""
    if kind == "docker":
        _write(os.path.join(str(root), ".dockerenv"), "")
    elif kind == "podman":
        _write(os.path.join(str(root), "run", ".containerenv"), "engine=podman\n")
    else:
        _write(os.path.join(str(procfs), "1", "environ"), f"PATH=/usr/bin\0container={kind}\0")


def add_kernel(root, procfs, release="6.1.0-28-amd64", headers=True):
    """``<procfs>/sys/kernel/osrelease`` and, with headers, ``<root>/lib/modules/<release>/build``."""
    _write(os.path.join(str(procfs), "sys", "kernel", "osrelease"), release + "\n")
    modules = os.path.join(str(root), "lib", "modules", release)
    os.makedirs(modules, exist_ok=True)
    if headers:
        os.makedirs(os.path.join(modules, "build"), exist_ok=True)


def add_pci_ids(root, names, relative="usr/share/misc/pci.ids"):
    """A small pci.ids naming NVIDIA devices: ``names`` maps device IDs to names. Returns its path."""
    lines = [
        "# pci.ids excerpt written by fake_sysfs",
        "1002  Advanced Micro Devices, Inc. [AMD/ATI]",
        "\t2330  Not us",
    ]
    lines.append("10de  NVIDIA Corporation")
    for device_id, name in sorted(names.items(), key=lambda item: _hex(item[0])):
        lines.append(f"\t{_hex(device_id)[2:]}  {name}")
        lines.append("\t\t10de 1234  Some board")
    lines.append("10df  Emulex Corporation")
    lines.append("\t2330  Not us either")
    path = os.path.join(str(root), relative)
    _write(path, "\n".join(lines) + "\n")
    return path


def make_host(
    tmp_path,
    *,
    gpus=(),
    nvswitches=(),
    secure_boot=None,
    setup_mode=False,
    loaded_version=None,
    loaded_flavour="open",
    installed_version=None,
    nouveau=False,
    container=False,
    kernel_release="6.1.0-28-amd64",
    headers=True,
    pci_names=None,
):
    """A whole fake host under ``tmp_path``; returns ``dict(sysfs_path=, procfs_path=, root_path=)``.

    * ``gpus``: dicts for ``add_gpu`` (``device_id`` plus any add_pci_device attribute, ``address``,
      ``audio``); the bound driver defaults to ``nvidia`` when ``loaded_version`` is set.
    * ``nvswitches``: dicts for ``add_nvswitch`` (default device 0x22a3).
    * ``secure_boot``: None for a legacy BIOS boot (no /sys/firmware/efi), True/False for UEFI with
      that SecureBoot variable; ``setup_mode`` sets SetupMode.
    * ``loaded_version``/``loaded_flavour``: the loaded nvidia module (None: not loaded).
    * ``installed_version``: a libnvidia-ml version, or a list of them (None: no userspace).
    * ``nouveau``: nouveau loaded. ``container``: False, True (docker), or a kind (podman, lxc, ...).
    * ``kernel_release``/``headers``: the running kernel and whether its build tree exists.
    * ``pci_names``: ``{device_id: name}`` for a pci.ids under the root (None: no pci.ids).
    """
    tmp_path = str(tmp_path)
    sysfs = os.path.join(tmp_path, "sys")
    procfs = os.path.join(tmp_path, "proc")
    root = os.path.join(tmp_path, "root")
    for path in (sysfs, procfs, root, os.path.join(sysfs, "bus", "pci", "devices")):
        os.makedirs(path, exist_ok=True)

    for index, spec in enumerate(gpus):
        gpu = dict(spec)
        if loaded_version and "driver" not in gpu:
            gpu["driver"] = "nvidia"
        add_gpu(sysfs, index, **gpu)
    for index, switch in enumerate(nvswitches):
        add_nvswitch(sysfs, index, **dict(switch))
    # Something that is not NVIDIA, as every host has.
    add_pci_device(sysfs, "0000:00:00.0", vendor="0x8086", device="0x09a2", pci_class="0x060000")

    if secure_boot is not None:
        add_efivars(sysfs, secure_boot=secure_boot, setup_mode=setup_mode)
    if loaded_version:
        add_loaded_driver(sysfs, procfs, loaded_version, loaded_flavour)
    if installed_version:
        versions = [installed_version] if isinstance(installed_version, str) else list(installed_version)
        for version in versions:
            add_userspace(root, version)
    if nouveau:
        add_nouveau(sysfs)
    if container:
        add_container(root, procfs, "docker" if container is True else container)
    if kernel_release:
        add_kernel(root, procfs, kernel_release, headers)
    if pci_names:
        add_pci_ids(root, pci_names)
    return {"sysfs_path": sysfs, "procfs_path": procfs, "root_path": root}
