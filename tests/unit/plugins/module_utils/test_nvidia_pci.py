"""Unit tests for plugins/module_utils/nvidia_pci.py: ID table, name fallback, flavour and branch policy, sysfs."""

from __future__ import annotations

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils import nvidia_pci
from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_pci import (
    ARCHITECTURES,
    CHIP_RANGES,
    KernelModuleError,
    check_branch,
    choose_kernel_module,
    classify,
    classify_device_id,
    classify_name,
    kernel_module_problems,
    load_pci_names,
    pcie_gen,
    pcie_link,
    scan_pci,
)

from ..modules import fake_sysfs

# Real PCI device IDs (pci.ids / NVIDIA driver README), with what they must classify as.
REAL_GPUS = [
    # device, architecture, chip, open_module, min_branch, max_branch, what
    (0x13C2, "maxwell", "GM204", "unsupported", None, 580, "GeForce GTX 970"),
    (0x17FD, "maxwell", "GM200", "unsupported", None, 580, "Tesla M40"),
    (0x15F8, "pascal", "GP100", "unsupported", None, 580, "Tesla P100 PCIe 16GB"),
    (0x1B06, "pascal", "GP102", "unsupported", None, 580, "GeForce GTX 1080 Ti"),
    (0x1B38, "pascal", "GP102", "unsupported", None, 580, "Tesla P40"),
    (0x1BB3, "pascal", "GP104", "unsupported", None, 580, "Tesla P4"),
    (0x1DB4, "volta", "GV100", "unsupported", None, 580, "Tesla V100 PCIe 16GB"),
    (0x1DB6, "volta", "GV100", "unsupported", None, 580, "Tesla V100 PCIe 32GB"),
    (0x1E04, "turing", "TU102", "recommended", None, None, "GeForce RTX 2080 Ti"),
    (0x1E30, "turing", "TU102", "recommended", None, None, "Quadro RTX 6000/8000"),
    (0x1EB8, "turing", "TU104", "recommended", None, None, "Tesla T4"),
    (0x1F08, "turing", "TU106", "recommended", None, None, "GeForce RTX 2060"),
    (0x1F82, "turing", "TU117", "recommended", None, None, "GeForce GTX 1650"),
    (0x2184, "turing", "TU116", "recommended", None, None, "GeForce GTX 1660"),
    (0x20B0, "ampere", "GA100", "recommended", None, None, "A100 SXM4 40GB"),
    (0x20B5, "ampere", "GA100", "recommended", None, None, "A100 PCIe 80GB"),
    (0x2204, "ampere", "GA102", "recommended", None, None, "GeForce RTX 3090"),
    (0x2230, "ampere", "GA102", "recommended", None, None, "RTX A6000"),
    (0x2235, "ampere", "GA102", "recommended", None, None, "A40"),
    (0x2414, "ampere", "GA103", "recommended", None, None, "GeForce RTX 3060 Ti"),
    (0x2484, "ampere", "GA104", "recommended", None, None, "GeForce RTX 3070"),
    (0x2503, "ampere", "GA106", "recommended", None, None, "GeForce RTX 3060"),
    (0x25B6, "ampere", "GA107", "recommended", None, None, "A2 / A16"),
    (0x2684, "ada", "AD102", "recommended", 525, None, "GeForce RTX 4090"),
    (0x26B1, "ada", "AD102", "recommended", 525, None, "RTX 6000 Ada Generation"),
    (0x26B9, "ada", "AD102", "recommended", 525, None, "L40S"),
    (0x2704, "ada", "AD103", "recommended", 525, None, "GeForce RTX 4080"),
    (0x27B8, "ada", "AD104", "recommended", 525, None, "L4"),
    (0x2803, "ada", "AD106", "recommended", 525, None, "GeForce RTX 4060 Ti"),
    (0x2882, "ada", "AD107", "recommended", 525, None, "GeForce RTX 4060"),
    (0x2330, "hopper", "GH100", "recommended", 525, None, "H100 SXM5 80GB"),
    (0x2331, "hopper", "GH100", "recommended", 525, None, "H100 PCIe"),
    (0x2335, "hopper", "GH100", "recommended", 550, None, "H200 SXM 141GB"),
    (0x2342, "hopper", "GH100", "required", 525, None, "GH200 480GB (Grace Hopper)"),
    (0x2901, "blackwell", "GB100", "required", 570, None, "B200"),
    (0x2941, "blackwell", "GB100", "required", 570, None, "HGX GB200"),
    (0x3182, "blackwell", "GB110", "required", 570, None, "B300 SXM6 AC"),
    (0x2B85, "blackwell", "GB202", "required", 570, None, "GeForce RTX 5090"),
    (0x2BB1, "blackwell", "GB202", "required", 570, None, "RTX PRO 6000 Blackwell Workstation Edition"),
    (0x2BB5, "blackwell", "GB202", "required", 570, None, "RTX PRO 6000 Blackwell Server Edition"),
    (0x2C02, "blackwell", "GB203", "required", 570, None, "GeForce RTX 5080"),
    (0x2D04, "blackwell", "GB206", "required", 570, None, "GeForce RTX 5060 Ti"),
    (0x2D83, "blackwell", "GB207", "required", 570, None, "GeForce RTX 5050"),
    (0x2F04, "blackwell", "GB205", "required", 570, None, "GeForce RTX 5070"),
]


def gpu(device_id, address="0000:01:00.0", name=None):
    """A GPU entry as scan_pci makes it (the fields the policy functions use)."""
    entry = {"address": address, "device_id": f"0x{device_id:04x}", "name": name}
    entry.update(classify(device_id, name))
    return entry


# --- the ID table ------------------------------------------------------------------------------


@pytest.mark.parametrize("row", REAL_GPUS, ids=[f"{row[0]:04x}-{row[6]}" for row in REAL_GPUS])
def test_real_ids(row):
    device_id, arch, chip, open_module, min_branch, max_branch, _what = row
    assert classify(device_id) == {
        "architecture": arch,
        "chip": chip,
        "open_module": open_module,
        "min_branch": min_branch,
        "max_branch": max_branch,
    }


def test_hex_strings_are_accepted():
    assert classify("0x2330\n")["chip"] == "GH100"
    assert classify("2b85")["architecture"] == "blackwell"


def test_table_is_sorted_and_disjoint():
    for index, (start, end, arch, chip) in enumerate(CHIP_RANGES):
        assert start <= end, chip
        assert arch in ARCHITECTURES
        if index + 1 < len(CHIP_RANGES):
            assert end < CHIP_RANGES[index + 1][0], (chip, CHIP_RANGES[index + 1][3])


def test_turing_and_newer_leave_no_gap_to_unknown():
    """From the first Turing ID on, every ID is placed: gaps are only between ranges of one architecture."""
    first_turing = min(start for start, _e, arch, _c in CHIP_RANGES if arch == "turing")
    for device_id in range(first_turing, nvidia_pci.HIGHEST_KNOWN_ID + 1):
        arch, _chip = classify_device_id(device_id)
        assert arch not in ("unknown", "unknown-newer"), hex(device_id)


def test_gap_between_ranges_of_one_architecture():
    # 0x2a00-0x2aff lies between GB102 and GB10B: Blackwell, chip unknown.
    assert classify_device_id(0x2A10) == ("blackwell", None)
    assert classify(0x2A10)["open_module"] == "required"


def test_gap_between_architectures_is_unknown():
    # 0x1500 lies between GM206 (Maxwell) and GP100 (Pascal).
    assert classify_device_id(0x1500) == ("unknown", None)


def test_newer_than_the_table_is_treated_like_blackwell():
    info = classify(0x3F00)
    assert info["architecture"] == "unknown-newer"
    assert info["chip"] is None
    assert info["open_module"] == "required"
    assert info["min_branch"] == 570


def test_older_than_the_table_is_unknown():
    # 102d: GK210GL [Tesla K80] (Kepler, not in the table).
    info = classify(0x102D)
    assert info["architecture"] == "unknown"
    assert info["open_module"] == "unsupported"
    assert classify(None)["architecture"] == "unknown"


# --- the name fallback ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("NVIDIA B200", "blackwell"),
        ("NVIDIA B300 SXM6 AC", "blackwell"),
        ("NVIDIA GB200", "blackwell"),
        ("NVIDIA GB300", "blackwell"),
        ("NVIDIA GeForce RTX 5090", "blackwell"),
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "blackwell"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "blackwell"),
        ("Blackwell something", "blackwell"),
        ("NVIDIA H100 80GB HBM3", "hopper"),
        ("NVIDIA H100 PCIe", "hopper"),
        ("NVIDIA H200", "hopper"),
        ("NVIDIA H200 NVL", "hopper"),
        ("NVIDIA GH200 480GB", "hopper"),
        ("NVIDIA H20", "hopper"),
        ("NVIDIA L40S", "ada"),
        ("NVIDIA L40", "ada"),
        ("NVIDIA L4", "ada"),
        ("NVIDIA GeForce RTX 4090", "ada"),
        ("NVIDIA RTX 6000 Ada Generation", "ada"),
        ("NVIDIA RTX 4000 SFF Ada Generation", "ada"),
        ("NVIDIA A100-SXM4-80GB", "ampere"),
        ("NVIDIA A100 80GB PCIe", "ampere"),
        ("NVIDIA A30", "ampere"),
        ("NVIDIA A40", "ampere"),
        ("NVIDIA A10", "ampere"),
        ("NVIDIA A10G", "ampere"),
        ("NVIDIA GeForce RTX 3090", "ampere"),
        ("NVIDIA RTX A6000", "ampere"),
        ("NVIDIA RTX A4000", "ampere"),
        ("NVIDIA GeForce RTX 2080 Ti", "turing"),
        ("Tesla T4", "turing"),
        ("Quadro RTX 6000", "turing"),
        ("NVIDIA TITAN RTX", "turing"),
        ("NVIDIA GeForce GTX 1660 SUPER", "turing"),
        ("Tesla V100-SXM2-16GB", "volta"),
        ("Tesla V100S-PCIE-32GB", "volta"),
        ("NVIDIA TITAN V", "volta"),
        ("Tesla P100-PCIE-16GB", "pascal"),
        ("Tesla P40", "pascal"),
        ("Tesla P4", "pascal"),
        ("NVIDIA GeForce GTX 1080 Ti", "pascal"),
        ("NVIDIA TITAN X (Pascal)", "pascal"),
        ("NVIDIA TITAN Xp", "pascal"),
        ("Quadro P6000", "pascal"),
        ("GeForce GTX TITAN X", "maxwell"),
        ("Tesla M40 24GB", "maxwell"),
        ("NVIDIA GeForce GTX 970", "maxwell"),
        # pci.ids spelling: the chip code decides.
        ("GB110 [B300 SXM6 AC]", "blackwell"),
        ("GH100 [H200 SXM 141GB]", "hopper"),
        ("AD102GL [L40S]", "ada"),
        ("GA102GL [RTX A6000]", "ampere"),
        ("TU104GL [Tesla T4]", "turing"),
        ("GV100GL [Tesla V100 PCIe 16GB]", "volta"),
        ("GP102GL [Tesla P40]", "pascal"),
        ("GM200GL [Tesla M40]", "maxwell"),
    ],
)
def test_classify_name(name, arch):
    assert classify_name(name) == arch


@pytest.mark.parametrize("name", [None, "", "NVIDIA Corporation Device 9999", "GK210GL [Tesla K80]", "Radeon"])
def test_classify_name_unknown(name):
    assert classify_name(name) is None


def test_name_fallback_only_for_unknown_ids():
    # A known ID wins over a misleading name.
    assert classify(0x2330, "NVIDIA GeForce RTX 5090")["architecture"] == "hopper"
    # An unknown ID takes the name.
    info = classify(0x3F00, "NVIDIA B300")
    assert (info["architecture"], info["open_module"], info["min_branch"]) == ("blackwell", "required", 570)
    info = classify(0x1500, "GP104GL [Tesla P4]")
    assert (info["architecture"], info["chip"], info["max_branch"]) == ("pascal", "GP104", 580)


def test_grace_hopper_by_name_requires_open():
    assert classify(0x2343, "GH100 [GH200 144GB]")["open_module"] == "required"
    assert classify(0x2330, "GH100 [H100 SXM5 80GB]")["open_module"] == "recommended"


# --- kernel module flavour ---------------------------------------------------------------------

FLAVOUR_CASES = [
    # device, auto, open ok, proprietary ok
    (0x1B06, "proprietary", False, True),  # GP102 GTX 1080 Ti
    (0x1B38, "proprietary", False, True),  # GP102 Tesla P40
    (0x1DB4, "proprietary", False, True),  # GV100 V100
    (0x1E04, "open", True, True),  # TU102 RTX 2080 Ti
    (0x2204, "open", True, True),  # GA102 RTX 3090
    (0x2230, "open", True, True),  # GA102 RTX A6000
    (0x2684, "open", True, True),  # AD102 RTX 4090
    (0x26B9, "open", True, True),  # AD102 L40S
    (0x2330, "open", True, True),  # GH100 H100 SXM5
    (0x2342, "open", True, False),  # GH200
    (0x2B85, "open", True, False),  # GB202 RTX 5090
    (0x2BB1, "open", True, False),  # GB202 RTX PRO 6000 Blackwell
    (0x2901, "open", True, False),  # GB100 B200
]


@pytest.mark.parametrize(("device_id", "auto", "open_ok", "proprietary_ok"), FLAVOUR_CASES)
def test_flavour_table(device_id, auto, open_ok, proprietary_ok):
    gpus = [gpu(device_id, "0000:01:00.0"), gpu(device_id, "0000:02:00.0")]
    assert choose_kernel_module(gpus, "auto") == auto
    for requested, ok in (("open", open_ok), ("proprietary", proprietary_ok)):
        if ok:
            assert choose_kernel_module(gpus, requested) == requested
        else:
            with pytest.raises(KernelModuleError) as info:
                choose_kernel_module(gpus, requested)
            message = str(info.value)
            assert "0000:01:00.0, 0000:02:00.0" in message
            assert classify(device_id)["chip"] in message


def test_open_on_pascal_names_the_gpu_and_what_it_needs():
    gpus = [gpu(0x2204, "0000:01:00.0", "GA102 [GeForce RTX 3090]"), gpu(0x1B38, "0000:81:00.0", "GP102GL [Tesla P40]")]
    with pytest.raises(KernelModuleError) as info:
        choose_kernel_module(gpus, "open")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "0000:81:00.0 (GP102, Pascal, GP102GL [Tesla P40])" in message
    assert "0000:01:00.0" not in message  # the RTX 3090 is fine
    assert "Turing and newer" in message
    assert "proprietary" in message
    assert info.value.problems == [message]


def test_proprietary_on_blackwell_names_the_gpu_and_what_it_needs():
    gpus = [gpu(0x2B85, "0000:41:00.0", "GB202 [GeForce RTX 5090]")]
    with pytest.raises(KernelModuleError) as info:
        choose_kernel_module(gpus, "proprietary")
    message = str(info.value)
    assert "0000:41:00.0 (GB202, Blackwell, GB202 [GeForce RTX 5090])" in message
    assert "needs the open kernel modules" in message
    assert "kernel_module=open" in message


def test_name_is_left_out_when_unknown():
    with pytest.raises(KernelModuleError) as info:
        choose_kernel_module([gpu(0x1DB4, "0000:3b:00.0")], "open")
    assert "0000:3b:00.0 (GV100, Volta)" in str(info.value)


def test_mixed_blackwell_and_pascal_is_impossible_even_with_auto():
    gpus = [gpu(0x2B85, "0000:01:00.0"), gpu(0x1B06, "0000:02:00.0")]
    for requested in ("auto", "open", "proprietary"):
        with pytest.raises(KernelModuleError) as info:
            choose_kernel_module(gpus, requested)
        assert "0000:01:00.0" in str(info.value) or "0000:02:00.0" in str(info.value)
    with pytest.raises(KernelModuleError) as info:
        choose_kernel_module(gpus, "auto")
    message = str(info.value)
    assert "mixes" in message
    assert "0000:01:00.0 (GB202, Blackwell)" in message
    assert "0000:02:00.0 (GP102, Pascal)" in message


def test_auto_mixes_that_work():
    # Turing + Pascal: proprietary drives both.
    assert choose_kernel_module([gpu(0x1E04), gpu(0x1B38, "0000:02:00.0")], "auto") == "proprietary"
    # Hopper + Blackwell: open.
    assert choose_kernel_module([gpu(0x2330), gpu(0x2901, "0000:02:00.0")], "auto") == "open"
    # An unknown pre-Turing ID counts as unable to run open.
    assert choose_kernel_module([gpu(0x2330), gpu(0x102D, "0000:02:00.0")], "auto") == "proprietary"


def test_no_gpus():
    assert choose_kernel_module([], "auto") == "open"
    assert choose_kernel_module([], "open") == "open"
    assert choose_kernel_module([], "proprietary") == "proprietary"


def test_kernel_module_problems_does_not_raise():
    assert kernel_module_problems([gpu(0x2330)], "auto") == ("open", [])
    choice, problems = kernel_module_problems([gpu(0x2B85)], "proprietary")
    assert choice is None and len(problems) == 1
    choice, problems = kernel_module_problems([], "closed")
    assert choice is None and "closed" in problems[0]


# --- branch ------------------------------------------------------------------------------------


def test_branch_too_old():
    gpus = [gpu(0x2B85, "0000:01:00.0", "GB202 [GeForce RTX 5090]")]
    (problem,) = check_branch(gpus, 535)
    assert "535 is too old" in problem
    assert "0000:01:00.0 (GB202, Blackwell, GB202 [GeForce RTX 5090])" in problem
    assert "570 or newer" in problem
    assert check_branch(gpus, 570) == []
    assert check_branch(gpus, 580) == []


def test_branch_too_new_for_pascal_volta():
    gpus = [gpu(0x1B38, "0000:01:00.0"), gpu(0x1DB6, "0000:02:00.0"), gpu(0x2330, "0000:03:00.0")]
    assert check_branch(gpus, 580) == []
    (problem,) = check_branch(gpus, 590)
    assert "590 is too new" in problem
    assert "0000:01:00.0 (GP102, Pascal)" in problem
    assert "0000:02:00.0 (GV100, Volta)" in problem
    assert "0000:03:00.0" not in problem
    assert "up to branch 580" in problem


def test_branch_h200_and_ada():
    assert check_branch([gpu(0x2335)], 535) == [check_branch([gpu(0x2335)], 535)[0]]
    assert "550 or newer" in check_branch([gpu(0x2335)], 535)[0]
    assert check_branch([gpu(0x2335)], 550) == []
    assert check_branch([gpu(0x2330)], 535) == []
    assert "525 or newer" in check_branch([gpu(0x26B9)], 470)[0]


def test_branch_groups_identical_gpus_and_reports_both_ends():
    gpus = [gpu(0x2901, f"0000:{i:02x}:00.0") for i in range(1, 9)] + [gpu(0x1B38, "0000:c1:00.0")]
    problems = check_branch(gpus, 535)
    assert len(problems) == 1  # B200s too old; P40 fine with 535
    assert "0000:01:00.0, 0000:02:00.0" in problems[0] and "0000:08:00.0" in problems[0]
    assert check_branch(gpus, None) == []
    assert check_branch([], 999) == []


# --- PCIe --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gen"),
    [
        ("2.5 GT/s PCIe", 1),
        ("5.0 GT/s PCIe", 2),
        ("8.0 GT/s PCIe", 3),
        ("16.0 GT/s PCIe", 4),
        ("32.0 GT/s PCIe", 5),
        ("64.0 GT/s PCIe", 6),
        ("8 GT/s", 3),  # older kernels
        ("5 GT/s", 2),
        ("Unknown", None),
        ("", None),
        (None, None),
    ],
)
def test_pcie_gen(text, gen):
    assert pcie_gen(text) == gen


def test_pcie_link_degraded_by_width_only():
    full = pcie_link("32.0 GT/s PCIe", "32.0 GT/s PCIe", "16", "16")
    assert full == {"current_gen": 5, "max_gen": 5, "current_width": 16, "max_width": 16, "degraded": False}
    narrow = pcie_link("16.0 GT/s PCIe", "16.0 GT/s PCIe", "8", "16")
    assert narrow["degraded"] is True
    # Idle GPUs drop to 2.5 GT/s: not degraded.
    idle = pcie_link("2.5 GT/s PCIe", "16.0 GT/s PCIe", "16", "16")
    assert (idle["current_gen"], idle["degraded"]) == (1, False)
    unknown = pcie_link(None, None, None, "0")
    assert unknown == {
        "current_gen": None,
        "max_gen": None,
        "current_width": None,
        "max_width": None,
        "degraded": False,
    }


# --- sysfs and pci.ids -------------------------------------------------------------------------


def test_scan_finds_gpus_and_nvswitches_only(tmp_path):
    sysfs = tmp_path / "sys"
    fake_sysfs.add_gpu(sysfs, 0, "0x2330", numa_node=0, driver="nvidia", audio=True)
    fake_sysfs.add_gpu(sysfs, 1, "0x2330", numa_node=1, current_link_width=8, pci_class="0x030000")
    fake_sysfs.add_nvswitch(sysfs, 0, "0x22a3")
    fake_sysfs.add_nvswitch(sysfs, 1, "0x1af1", driver="nvidia-nvswitch")
    fake_sysfs.add_nvswitch(sysfs, 2, "0x9999")
    # Not NVIDIA, and an NVIDIA USB controller: neither counts.
    fake_sysfs.add_pci_device(sysfs, "0000:00:02.0", vendor="0x8086", device="0x4680", pci_class="0x030000")
    fake_sysfs.add_pci_device(sysfs, "0000:01:00.2", device="0x1ad6", pci_class="0x0c0330")
    result = scan_pci(str(sysfs))
    assert result["gpu_count"] == 2
    assert result["nvswitch_count"] == 3
    first, second = result["gpus"]
    assert first == {
        "address": "0000:01:00.0",
        "vendor_id": "0x10de",
        "device_id": "0x2330",
        "subsystem_vendor_id": "0x10de",
        "subsystem_device_id": "0x16c1",
        "class": "0x030200",
        "name": None,
        "architecture": "hopper",
        "chip": "GH100",
        "open_module": "recommended",
        "min_branch": 525,
        "max_branch": None,
        "numa_node": 0,
        "driver": "nvidia",
        "pcie": {"current_gen": 4, "max_gen": 4, "current_width": 16, "max_width": 16, "degraded": False},
    }
    assert second["address"] == "0000:02:00.0"
    assert second["class"] == "0x030000"
    assert second["numa_node"] == 1
    assert second["driver"] is None
    assert second["pcie"]["degraded"] is True
    assert result["nvswitches"] == [
        {
            "address": "0000:c0:00.0",
            "device_id": "0x22a3",
            "generation": "NVSwitch gen3 (HGX H100/H200)",
            "driver": None,
        },
        {
            "address": "0000:c1:00.0",
            "device_id": "0x1af1",
            "generation": "NVSwitch gen2 (HGX A100)",
            "driver": "nvidia-nvswitch",
        },
        {"address": "0000:c2:00.0", "device_id": "0x9999", "generation": None, "driver": None},
    ]


def test_scan_numa_minus_one_and_missing_attributes(tmp_path):
    sysfs = tmp_path / "sys"
    fake_sysfs.add_gpu(
        sysfs,
        0,
        "0x2b85",
        numa_node=-1,
        subsystem_vendor=None,
        subsystem_device=None,
        current_link_speed=None,
        max_link_speed=None,
    )
    (entry,) = scan_pci(str(sysfs))["gpus"]
    assert entry["numa_node"] is None
    assert entry["subsystem_vendor_id"] is None
    assert (entry["pcie"]["current_gen"], entry["pcie"]["max_gen"]) == (None, None)
    assert entry["architecture"] == "blackwell"


def test_scan_without_pci_bus(tmp_path):
    assert scan_pci(str(tmp_path / "nothing")) == {"gpus": [], "nvswitches": [], "gpu_count": 0, "nvswitch_count": 0}


def test_scan_names_from_pci_ids(tmp_path):
    sysfs = tmp_path / "sys"
    fake_sysfs.add_gpu(sysfs, 0, "0x2bb1")
    fake_sysfs.add_gpu(sysfs, 1, "0x3f00")
    path = fake_sysfs.add_pci_ids(
        tmp_path, {"0x2bb1": "GB202GL [RTX PRO 6000 Blackwell Workstation Edition]", "0x3f00": "GB300 [B300 Ultra]"}
    )
    names = load_pci_names(path)
    assert names[0x2BB1] == "GB202GL [RTX PRO 6000 Blackwell Workstation Edition]"
    assert 0x2330 not in names  # only vendor 10de, not the AMD or Emulex entries around it
    first, second = scan_pci(str(sysfs), names)["gpus"]
    assert first["name"] == "GB202GL [RTX PRO 6000 Blackwell Workstation Edition]"
    # 0x3f00 is above the table; the name places it.
    assert (second["architecture"], second["chip"], second["open_module"]) == ("blackwell", "GB300", "required")


def test_load_pci_names_unreadable(tmp_path):
    assert load_pci_names(str(tmp_path / "missing.ids")) == {}
