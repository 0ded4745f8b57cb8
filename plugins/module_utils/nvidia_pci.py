# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""NVIDIA GPUs and NVSwitches from PCI sysfs, and what driver each of them can run.

Runs on targets: standard library only, and it only reads. Nothing here needs a driver:
the PCI IDs are in sysfs from the moment the kernel enumerates the bus.

Three things live here:

* ``scan_pci()``: NVIDIA devices from ``<sysfs>/bus/pci/devices/*`` (GPUs are display
  class 0x0300 VGA or 0x0302 3D controller; NVSwitches are class 0x0680, bridge/other).
* ``classify()``: PCI device ID -> (architecture, chip) from ``CHIP_RANGES``, with a
  name-based fallback (``classify_name()``) for IDs the table does not know.
* The driver policy per architecture (``ARCHITECTURES``): whether the open kernel modules
  are required, recommended or unsupported, and the oldest/newest driver branch.
  ``choose_kernel_module()`` and ``check_branch()`` apply it to the GPUs of one host.
"""

from __future__ import annotations

import bisect
import os
import re

NVIDIA_VENDOR_ID = 0x10DE

# PCI class codes (base class << 8 | subclass); sysfs "class" holds these plus the prog-if byte.
PCI_CLASS_VGA = 0x0300
PCI_CLASS_3D = 0x0302
PCI_CLASS_BRIDGE_OTHER = 0x0680
GPU_CLASSES = (PCI_CLASS_VGA, PCI_CLASS_3D)

# NVSwitch device IDs seen on the host PCI bus (pci.ids: "1af1 GA100 [A100 NVSwitch]",
# "22a3 GH100 [H100 NVSwitch]"). Any NVIDIA device of class 0x0680 is treated as an NVSwitch;
# this table only names the generation. HGX B200/B300 NVSwitches sit behind the baseboard and
# are not NVIDIA devices on the host bus.
NVSWITCH_GENERATIONS = {
    0x1AF1: "NVSwitch gen2 (HGX A100)",
    0x22A3: "NVSwitch gen3 (HGX H100/H200)",
}

# PCI sysfs attributes read for every NVIDIA device.
SYSFS_ATTRIBUTES = (
    "vendor",
    "device",
    "class",
    "subsystem_vendor",
    "subsystem_device",
    "numa_node",
    "current_link_speed",
    "max_link_speed",
    "current_link_width",
    "max_link_width",
)

# Driver policy per architecture.
#
# open_module:
#   required     the proprietary kernel modules do not support these GPUs (Blackwell; Grace Hopper),
#   recommended  both flavours work and NVIDIA recommends the open one (Turing and newer; the default
#                flavour since the 560 branch),
#   unsupported  the open modules need the GSP that Turing introduced, so these GPUs need the
#                proprietary modules (Maxwell, Pascal, Volta).
# min_branch: the oldest driver branch that supports the architecture (None: any current branch).
# max_branch: the newest one; NVIDIA announced R580 as the last branch for Maxwell, Pascal and Volta.
#
# Sources: NVIDIA Driver Installation Guide, "Kernel Modules" (open flavour: Turing and newer;
# proprietary: required for Maxwell, Pascal, Volta); NVIDIA GPU driver README, "Open Linux Kernel
# Modules"; NVIDIA Unix graphics feature deprecation schedule ("The release 580 series will be the last
# to support GPUs based on the Maxwell, Pascal, and Volta architectures").
ARCHITECTURES = {
    "maxwell": {"open_module": "unsupported", "min_branch": None, "max_branch": 580},
    "pascal": {"open_module": "unsupported", "min_branch": None, "max_branch": 580},
    "volta": {"open_module": "unsupported", "min_branch": None, "max_branch": 580},
    "turing": {"open_module": "recommended", "min_branch": None, "max_branch": None},
    "ampere": {"open_module": "recommended", "min_branch": None, "max_branch": None},
    "ada": {"open_module": "recommended", "min_branch": 525, "max_branch": None},
    "hopper": {"open_module": "recommended", "min_branch": 525, "max_branch": None},
    "blackwell": {"open_module": "required", "min_branch": 570, "max_branch": None},
    # An ID above every range of CHIP_RANGES: a GPU newer than this table. Every GPU after
    # Blackwell is expected to need the open modules, so it is treated like Blackwell.
    "unknown-newer": {"open_module": "required", "min_branch": 570, "max_branch": None},
    # An ID below the highest range that no range (and no name) places: in practice the pre-Turing
    # part of the ID space (Kepler and older, or a gap between pre-Turing chips), so no open modules.
    "unknown": {"open_module": "unsupported", "min_branch": None, "max_branch": None},
}

ARCHITECTURE_TITLES = {
    "maxwell": "Maxwell",
    "pascal": "Pascal",
    "volta": "Volta",
    "turing": "Turing",
    "ampere": "Ampere",
    "ada": "Ada Lovelace",
    "hopper": "Hopper",
    "blackwell": "Blackwell",
    "unknown-newer": "newer than this collection knows",
    "unknown": "unknown architecture",
}

# PCI device ID ranges -> (architecture, chip), sorted and non-overlapping.
#
# Source: the PCI ID database (https://pci-ids.ucw.cz, pci.ids vendor 10de) and the NVIDIA driver
# README, "Appendix A. Supported NVIDIA GPU Products" (one PCI device ID per product). NVIDIA hands
# out device IDs in blocks per chip; each range below is the block around the IDs those lists give
# for the chip. From Turing on, the blocks are contiguous (or separated by gaps between chips of the
# same architecture, which classify() resolves to that architecture), so a new SKU of a known chip
# lands in the right architecture. The same blocks hold the non-GPU functions of a board (HD audio,
# USB-C): those are never classified, because only display-class devices are GPUs.
CHIP_RANGES = (
    # Maxwell
    (0x1340, 0x137F, "maxwell", "GM108"),  # 1340 GeForce 830M ... 137d GeForce 940A
    (0x1380, 0x13BF, "maxwell", "GM107"),  # 1380 GTX 750 Ti, 13bd Tesla M10
    (0x13C0, 0x13FF, "maxwell", "GM204"),  # 13c0 GTX 980, 13f2 Tesla M60
    (0x1400, 0x143F, "maxwell", "GM206"),  # 1401 GTX 960, 1431 Tesla M4
    # Pascal
    (0x15C0, 0x15FF, "pascal", "GP100"),  # 15f7/15f8 Tesla P100 PCIe, 15f9 P100 SXM2
    # Maxwell
    (0x1600, 0x167F, "maxwell", "GM204"),  # 1617 GTX 980M, 1676 Quadro M2200 Mobile
    # Pascal
    (0x1700, 0x173F, "pascal", "GP100"),  # 1725, 172e, 172f
    # Maxwell
    (0x1740, 0x177F, "maxwell", "GM108"),  # 174d MX130, 174e MX110
    (0x1780, 0x17BF, "maxwell", "GM107"),  # 1789 GRID M3-3020, 179c 940MX
    (0x17C0, 0x17FF, "maxwell", "GM200"),  # 17c2 GTX TITAN X, 17c8 GTX 980 Ti, 17fd Tesla M40
    # Pascal
    (0x1B00, 0x1B7F, "pascal", "GP102"),  # 1b06 GTX 1080 Ti, 1b30 Quadro P6000, 1b38 Tesla P40
    (0x1B80, 0x1BFF, "pascal", "GP104"),  # 1b80 GTX 1080, 1bb3 Tesla P4
    (0x1C00, 0x1C7F, "pascal", "GP106"),  # 1c03 GTX 1060 6GB
    (0x1C80, 0x1CFF, "pascal", "GP107"),  # 1c82 GTX 1050 Ti, 1cb1 Quadro P1000
    (0x1D00, 0x1D7F, "pascal", "GP108"),  # 1d01 GT 1030
    # Volta
    (0x1D80, 0x1DFF, "volta", "GV100"),  # 1d81 TITAN V, 1db4 V100 PCIe 16GB, 1db6 V100 PCIe 32GB, 1df6 V100S
    # Turing
    (0x1E00, 0x1E7F, "turing", "TU102"),  # 1e04 RTX 2080 Ti, 1e30 Quadro RTX 6000/8000
    (0x1E80, 0x1EFF, "turing", "TU104"),  # 1e82 RTX 2080, 1eb8 Tesla T4
    (0x1F00, 0x1F7F, "turing", "TU106"),  # 1f02 RTX 2070, 1f08 RTX 2060
    (0x1F80, 0x1FFF, "turing", "TU117"),  # 1f82 GTX 1650, 1ff0 T1000
    # Ampere
    (0x2000, 0x20FF, "ampere", "GA100"),  # 20b0 A100 SXM4 40GB, 20b5 A100 PCIe 80GB, 20b7 A30
    # Turing
    (0x2100, 0x21FF, "turing", "TU116"),  # 2182 GTX 1660 Ti, 21c4 GTX 1660 SUPER
    # Ampere
    (0x2200, 0x22FF, "ampere", "GA102"),  # 2204 RTX 3090, 2230 RTX A6000, 2235 A40, 2236 A10
    # Hopper
    (0x2300, 0x23FF, "hopper", "GH100"),  # 2330 H100 SXM5 80GB, 2331 H100 PCIe, 2335 H200, 2342 GH200
    # Ampere
    (0x2400, 0x247F, "ampere", "GA103"),  # 2414 RTX 3060 Ti
    (0x2480, 0x24FF, "ampere", "GA104"),  # 2484 RTX 3070, 24b0 RTX A4000
    (0x2500, 0x257F, "ampere", "GA106"),  # 2503 RTX 3060, 2531 RTX A2000
    (0x2580, 0x25FF, "ampere", "GA107"),  # 2582 RTX 3050, 25b6 A2 / A16
    # Ada Lovelace
    (0x2600, 0x26FF, "ada", "AD102"),  # 2684 RTX 4090, 26b1 RTX 6000 Ada, 26b5 L40, 26b9 L40S
    (0x2700, 0x277F, "ada", "AD103"),  # 2704 RTX 4080
    (0x2780, 0x27FF, "ada", "AD104"),  # 2782 RTX 4070 Ti, 27b8 L4
    (0x2800, 0x287F, "ada", "AD106"),  # 2803 RTX 4060 Ti
    (0x2880, 0x28FF, "ada", "AD107"),  # 2882 RTX 4060, 28b0 RTX 2000 Ada
    # Blackwell
    (0x2900, 0x297F, "blackwell", "GB100"),  # 2901 B200, 2909 HGX B200, 2941 HGX GB200
    (0x2980, 0x29FF, "blackwell", "GB102"),  # 29bc B100
    (0x2B00, 0x2B7F, "blackwell", "GB10B"),  # 2b00 Jetson AGX Thor
    (0x2B80, 0x2BFF, "blackwell", "GB202"),  # 2b85 RTX 5090, 2bb1 RTX PRO 6000 Blackwell Workstation
    (0x2C00, 0x2C7F, "blackwell", "GB203"),  # 2c02 RTX 5080, 2c05 RTX 5070 Ti, 2c34 RTX PRO 4000 Blackwell
    (0x2D00, 0x2D7F, "blackwell", "GB206"),  # 2d04 RTX 5060 Ti, 2d30 RTX PRO 2000 Blackwell
    (0x2D80, 0x2DFF, "blackwell", "GB207"),  # 2d83 RTX 5050
    (0x2E00, 0x2E7F, "blackwell", "GB20B"),  # 2e12 GB10 (DGX Spark)
    (0x2F00, 0x2F7F, "blackwell", "GB205"),  # 2f04 RTX 5070
    (0x3180, 0x31FF, "blackwell", "GB110"),  # 3182 B300 SXM6 AC, 31c2 GB300
    (0x3200, 0x327F, "blackwell", "GB112"),  # 3200, 3224, 323e
    (0x3340, 0x337F, "blackwell", "GB120"),  # 3340
)

_RANGE_STARTS = [start for start, _end, _arch, _chip in CHIP_RANGES]
HIGHEST_KNOWN_ID = CHIP_RANGES[-1][1]

# Per-device refinements of the architecture policy.
DEVICE_OVERRIDES = {
    # H200 (pci.ids "GH100 [H200 SXM 141GB]", "GH100 [H200 NVL]"): first supported by the 550 branch.
    0x2335: {"min_branch": 550},
    0x233B: {"min_branch": 550},
    # GH200 Grace Hopper (pci.ids "GH100 [GH200 120GB / 480GB]", "GH100 [GH200 144G HBM3e]"): NVIDIA
    # supports Grace Hopper with the open kernel modules only.
    0x2342: {"open_module": "required"},
    0x2348: {"open_module": "required"},
}

# Name fallback, for IDs the table does not place. Checked in order, first match wins; the patterns
# match names as nvidia-smi prints them ("NVIDIA H100 80GB HBM3") and as pci.ids has them
# ("GH100 [H100 SXM5 80GB]"). Blackwell comes first so that "RTX PRO 6000 Blackwell" is Blackwell,
# Ada before Ampere/Turing so that "RTX 6000 Ada Generation" is Ada.
_CHIP_CODE = re.compile(r"\b(GB|GH|AD|GA|TU|GV|GP|GM)(\d{2,3})[A-Z]*\b", re.IGNORECASE)
_CHIP_CODE_ARCH = {
    "GB": "blackwell",
    "GH": "hopper",
    "AD": "ada",
    "GA": "ampere",
    "TU": "turing",
    "GV": "volta",
    "GP": "pascal",
    "GM": "maxwell",
}
NAME_PATTERNS = (
    ("blackwell", r"blackwell|\bG?B[123]00\b|\bGB10\b|\bRTX 50[5-9]0\b"),
    ("hopper", r"hopper|\bG?H(?:100|200|800|20)\b"),
    ("ada", r"\bada\b|\bL(?:4|20|40|40S|40G)\b|\bRTX 40[5-9]0\b"),
    ("ampere", r"ampere|\bA(?:100|800|30|40|10|10G|16|2)\b|\bRTX 30[5-9]0\b|\bRTX A\d{3,4}\b"),
    ("turing", r"turing|\bRTX 20[5-8]0\b|\bGTX 16[5-6]0\b|\bT4\b|Quadro RTX|TITAN RTX"),
    ("volta", r"volta|\bV100S?\b|TITAN V\b|Quadro GV100"),
    ("maxwell", r"maxwell|GTX TITAN X\b|\bGTX (?:9[5-8]0|750)\b|\b(?:Tesla|Quadro) M\d+\b"),
    ("pascal", r"pascal|\bP(?:100|40|4|6|10)\b|\bGTX 10[5-8]0\b|TITAN Xp?\b|Quadro P\d+"),
)
_NAME_PATTERNS = tuple((arch, re.compile(pattern, re.IGNORECASE)) for arch, pattern in NAME_PATTERNS)

# sysfs link speed -> PCIe generation. Kernels print "8.0 GT/s PCIe" (older ones "8 GT/s").
PCIE_GEN_BY_GTS = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}
_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*GT/s")

KERNEL_MODULE_CHOICES = ("auto", "open", "proprietary")


class KernelModuleError(ValueError):
    """The requested kernel module flavour cannot drive every GPU of the host.

    ``problems`` holds one sentence per problem; the message is all of them.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


# --- small parsers ----------------------------------------------------------------------------


def parse_hex(text):
    """``"0x10de\\n"`` -> 0x10de; None for anything else."""
    if text is None:
        return None
    try:
        return int(str(text).strip(), 16)
    except ValueError:
        return None


def hex_id(value, digits=4):
    """0x2330 -> ``"0x2330"``; None stays None."""
    return None if value is None else f"0x{value:0{digits}x}"


def pcie_gen(speed):
    """Link speed as sysfs prints it (``"16.0 GT/s PCIe"``) -> PCIe generation (4); None when unknown."""
    match = _SPEED.match(speed or "")
    if not match:
        return None
    return PCIE_GEN_BY_GTS.get(float(match.group(1)))


def _int_or_none(text):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def pcie_link(current_speed, max_speed, current_width, max_width):
    """The PCIe link of a device from its sysfs attributes.

    ``degraded`` is true when the link runs with fewer lanes than the device has (a GPU in a narrower
    slot, a bad riser or a link that retrained down). The generation is not counted: NVIDIA GPUs
    lower the link speed while idle to save power, so a lower current generation is normal.
    """
    cur_width = _int_or_none(current_width)
    top_width = _int_or_none(max_width)
    cur_width = cur_width if cur_width and cur_width > 0 else None
    top_width = top_width if top_width and top_width > 0 else None
    return {
        "current_gen": pcie_gen(current_speed),
        "max_gen": pcie_gen(max_speed),
        "current_width": cur_width,
        "max_width": top_width,
        "degraded": bool(cur_width and top_width and cur_width < top_width),
    }


# --- classification -----------------------------------------------------------------------------


def classify_name(name):
    """Architecture from a GPU name (nvidia-smi or pci.ids spelling); None when nothing matches."""
    if not name:
        return None
    match = _CHIP_CODE.search(name)
    if match:
        return _CHIP_CODE_ARCH[match.group(1).upper()]
    for arch, pattern in _NAME_PATTERNS:
        if pattern.search(name):
            return arch
    return None


def classify_device_id(device_id):
    """PCI device ID -> ``(architecture, chip)``.

    An ID inside a range gets that range's chip. An ID in a gap between two ranges of the same
    architecture gets that architecture with chip None; any other gap, or an ID below the table,
    is ``("unknown", None)``; an ID above the table is ``("unknown-newer", None)``.
    """
    if device_id is None:
        return "unknown", None
    if device_id > HIGHEST_KNOWN_ID:
        return "unknown-newer", None
    index = bisect.bisect_right(_RANGE_STARTS, device_id) - 1
    if index < 0:
        return "unknown", None
    start, end, arch, chip = CHIP_RANGES[index]
    if start <= device_id <= end:
        return arch, chip
    following = CHIP_RANGES[index + 1]  # exists: device_id <= HIGHEST_KNOWN_ID
    if following[2] == arch:
        return arch, None
    return "unknown", None


def architecture_policy(architecture):
    """The driver policy of an architecture (a copy): open_module, min_branch, max_branch."""
    return dict(ARCHITECTURES.get(architecture, ARCHITECTURES["unknown"]))


def classify(device_id, name=None):
    """Architecture, chip and driver policy of an NVIDIA GPU.

    ``device_id`` is an int (or a sysfs-style hex string). ``name`` is only used when the ID table
    does not know the ID (``unknown`` or ``unknown-newer``). Returns a dict with ``architecture``,
    ``chip``, ``open_module``, ``min_branch`` and ``max_branch``.
    """
    if isinstance(device_id, str):
        device_id = parse_hex(device_id)
    arch, chip = classify_device_id(device_id)
    if arch in ("unknown", "unknown-newer"):
        by_name = classify_name(name)
        if by_name:
            arch = by_name
            match = _CHIP_CODE.search(name or "")
            chip = (match.group(1) + match.group(2)).upper() if match else None
    result = {"architecture": arch, "chip": chip}
    result.update(architecture_policy(arch))
    result.update(DEVICE_OVERRIDES.get(device_id, {}))
    if name and re.search(r"\bGH200\b|grace hopper", name, re.IGNORECASE):
        result["open_module"] = "required"
    return result


# --- sysfs --------------------------------------------------------------------------------------


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def read_pci_device(path):
    """The raw sysfs attributes of one PCI device directory (missing ones are None)."""
    info = {attr: _read(os.path.join(path, attr)) for attr in SYSFS_ATTRIBUTES}
    try:
        info["driver"] = os.path.basename(os.readlink(os.path.join(path, "driver")))
    except OSError:
        info["driver"] = None
    return info


def load_pci_names(path, vendor_id=NVIDIA_VENDOR_ID):
    """Device names of one vendor from a pci.ids file: ``{device_id: name}``; empty when unreadable."""
    names = {}
    vendor = f"{vendor_id:04x}"
    device_line = re.compile(r"^\t([0-9a-fA-F]{4})\s+(.+?)\s*$")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            inside = False
            for line in handle:
                if not line.strip() or line.startswith("#"):
                    continue
                if not line.startswith("\t"):
                    if inside:
                        break
                    inside = line[:4].lower() == vendor and line[4:5].isspace()
                    continue
                if inside:
                    match = device_line.match(line)
                    if match:
                        names[int(match.group(1), 16)] = match.group(2)
    except OSError:
        return {}
    return names


def find_pci_ids(root_path="/"):
    """The first pci.ids file present under root_path (/usr/share/misc, /usr/share/hwdata), else None."""
    for relative in ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids"):
        path = os.path.join(root_path, relative)
        if os.path.isfile(path):
            return path
    return None


def _numa_node(text):
    value = _int_or_none(text)
    return value if value is not None and value >= 0 else None


def describe_gpu(address, raw, names=None):
    """The fact entry for one GPU from its raw sysfs attributes."""
    device_id = parse_hex(raw.get("device"))
    name = (names or {}).get(device_id)
    gpu = {
        "address": address,
        "vendor_id": hex_id(parse_hex(raw.get("vendor"))),
        "device_id": hex_id(device_id),
        "subsystem_vendor_id": hex_id(parse_hex(raw.get("subsystem_vendor"))),
        "subsystem_device_id": hex_id(parse_hex(raw.get("subsystem_device"))),
        "class": hex_id(parse_hex(raw.get("class")), digits=6),
        "name": name,
    }
    gpu.update(classify(device_id, name))
    gpu["numa_node"] = _numa_node(raw.get("numa_node"))
    gpu["driver"] = raw.get("driver")
    gpu["pcie"] = pcie_link(
        raw.get("current_link_speed"),
        raw.get("max_link_speed"),
        raw.get("current_link_width"),
        raw.get("max_link_width"),
    )
    return gpu


def scan_pci(sysfs_path="/sys", names=None):
    """NVIDIA GPUs and NVSwitches under ``<sysfs_path>/bus/pci/devices``.

    ``names`` maps device IDs to names (see ``load_pci_names``). Returns ``gpus`` (see
    ``describe_gpu``), ``nvswitches`` (address, device_id, generation, driver), ``gpu_count`` and
    ``nvswitch_count``, both lists ordered by PCI address. A missing directory is an empty bus.
    """
    root = os.path.join(sysfs_path, "bus", "pci", "devices")
    try:
        addresses = sorted(os.listdir(root))
    except OSError:
        addresses = []
    gpus, nvswitches = [], []
    for address in addresses:
        path = os.path.join(root, address)
        if parse_hex(_read(os.path.join(path, "vendor"))) != NVIDIA_VENDOR_ID:
            continue
        raw = read_pci_device(path)
        pci_class = parse_hex(raw["class"])
        if pci_class is None:
            continue
        base = pci_class >> 8
        if base in GPU_CLASSES:
            gpus.append(describe_gpu(address, raw, names))
        elif base == PCI_CLASS_BRIDGE_OTHER:
            device_id = parse_hex(raw["device"])
            nvswitches.append(
                {
                    "address": address,
                    "device_id": hex_id(device_id),
                    "generation": NVSWITCH_GENERATIONS.get(device_id),
                    "driver": raw["driver"],
                }
            )
    return {"gpus": gpus, "nvswitches": nvswitches, "gpu_count": len(gpus), "nvswitch_count": len(nvswitches)}


# --- policy over the GPUs of one host -----------------------------------------------------------


def _gpu_detail(gpu):
    """``(GP102, Pascal, GP102GL [Tesla P40])``: chip, architecture and name, as far as known."""
    arch = gpu.get("architecture") or "unknown"
    parts = [p for p in (gpu.get("chip"), ARCHITECTURE_TITLES.get(arch, arch), gpu.get("name")) if p]
    if gpu.get("device_id") and not gpu.get("chip"):
        parts.insert(0, f"device {gpu['device_id']}")
    return "({})".format(", ".join(parts))


def gpu_label(gpu):
    """``0000:01:00.0 (GP102, Pascal, GP102GL [Tesla P40])`` for messages."""
    return f"{gpu.get('address') or '?'} {_gpu_detail(gpu)}"


def _group_labels(gpus):
    """GPUs that describe the same way are listed once, with all their addresses."""
    groups = {}
    for gpu in gpus:
        groups.setdefault(_gpu_detail(gpu), []).append(gpu.get("address") or "?")
    return "; ".join(f"{', '.join(addresses)} {detail}" for detail, addresses in groups.items())


def kernel_module_problems(gpus, requested="auto"):
    """``(choice, problems)``: what ``choose_kernel_module`` returns, or ``(None, [sentences])``."""
    if requested not in KERNEL_MODULE_CHOICES:
        return None, [f"kernel module flavour {requested!r} is not one of {', '.join(KERNEL_MODULE_CHOICES)}."]
    required = [g for g in gpus if g.get("open_module") == "required"]
    unsupported = [g for g in gpus if g.get("open_module") == "unsupported"]
    if requested == "open":
        if unsupported:
            return None, [
                f"The open NVIDIA kernel modules were requested, but they cannot drive {_group_labels(unsupported)}: "
                "the open modules support Turing and newer GPUs only (they need the GSP that Turing introduced), so "
                "Maxwell, Pascal and Volta GPUs need the proprietary modules (driver branch 580 or older). Use "
                "kernel_module=proprietary (or auto)."
            ]
        return "open", []
    if requested == "proprietary":
        if required:
            return None, [
                f"The proprietary NVIDIA kernel modules were requested, but {_group_labels(required)} needs the "
                "open kernel modules: the proprietary modules do not support Blackwell and Grace Hopper GPUs. Use "
                "kernel_module=open (or auto)."
            ]
        return "proprietary", []
    if required and unsupported:
        return None, [
            f"This host mixes GPUs that need the open NVIDIA kernel modules ({_group_labels(required)}) with GPUs "
            f"that cannot run them ({_group_labels(unsupported)}). One host loads one flavour of the nvidia module, "
            "and no flavour drives both: the proprietary modules do not support Blackwell/Grace Hopper, the open "
            "modules do not support Maxwell/Pascal/Volta. Move one set of GPUs to another host."
        ]
    if required:
        return "open", []
    if unsupported:
        return "proprietary", []
    if all(g.get("open_module") == "recommended" for g in gpus):
        return "open", []
    return "proprietary", []


def choose_kernel_module(gpus, requested="auto"):
    """The kernel module flavour for these GPUs: ``"open"`` or ``"proprietary"``.

    ``requested`` is ``auto``, ``open`` or ``proprietary``. ``auto`` picks open when a GPU requires
    it or every GPU is recommended to use it (also for no GPUs: open is NVIDIA's default flavour),
    and proprietary when a GPU cannot run the open modules. Raises ``KernelModuleError`` (a
    ValueError) naming the offending GPUs for open on pre-Turing GPUs, proprietary on Blackwell or
    Grace Hopper, and a host mixing GPUs that need open with GPUs that cannot run it.
    """
    choice, problems = kernel_module_problems(gpus, requested)
    if problems:
        raise KernelModuleError(problems)
    return choice


def check_branch(gpus, branch):
    """Problems (sentences) with running driver branch ``branch`` on these GPUs; empty when fine."""
    if branch is None:
        return []
    branch = int(branch)
    too_old, too_new = {}, {}
    for gpu in gpus:
        low, high = gpu.get("min_branch"), gpu.get("max_branch")
        if low is not None and branch < low:
            too_old.setdefault(low, []).append(gpu)
        if high is not None and branch > high:
            too_new.setdefault(high, []).append(gpu)
    problems = []
    for low in sorted(too_old):
        problems.append(
            f"Driver branch {branch} is too old for {_group_labels(too_old[low])}, which needs branch {low} or newer."
        )
    for high in sorted(too_new):
        problems.append(
            f"Driver branch {branch} is too new for {_group_labels(too_new[high])}: NVIDIA supports it up to branch "
            f"{high} (R580 is the last branch for Maxwell, Pascal and Volta GPUs)."
        )
    return problems
