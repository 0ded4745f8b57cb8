"""Unit tests for plugins/module_utils/nvidia_smi.py (pure parsing)."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.gpubox.llm.plugins.module_utils import nvidia_smi
from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_smi import (
    QUERY_GPU_FIELDS,
    NvidiaSmiCommandError,
    NvidiaSmiError,
    NvidiaSmiParseError,
    check_result,
    detect_error,
    na_to_none,
    normalize_pci_bus_id,
    nvlink_groups,
    parse_cuda_version,
    parse_query_gpu,
    parse_topology,
    parse_versions,
    sysfs_pci_address,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "nvidia_smi")
BOXES = ["rtx6000_blackwell_1x", "rtx3090_8x", "l40s_4x", "h100_sxm_8x", "a100_mig"]


def read(case, name):
    with open(os.path.join(FIXTURES, case, name)) as handle:
        return handle.read()


def expected(case):
    with open(os.path.join(FIXTURES, case, "expected.yml")) as handle:
        return yaml.safe_load(handle)["expected"]


LEGEND = """
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NV#  = Connection traversing a bonded set of # NVLinks
"""


# --- query-gpu ---------------------------------------------------------------------------------


def test_query_fields_are_the_documented_names():
    assert QUERY_GPU_FIELDS == (
        "index",
        "uuid",
        "name",
        "pci.bus_id",
        "driver_version",
        "memory.total",
        "memory.used",
        "compute_cap",
        "pcie.link.gen.current",
        "pcie.link.gen.max",
        "pcie.link.width.current",
        "pcie.link.width.max",
        "persistence_mode",
        "mig.mode.current",
    )


@pytest.mark.parametrize("case", BOXES)
def test_parse_query_gpu_matches_expected_facts(case):
    exp = expected(case)
    gpus = parse_query_gpu(read(case, "query_gpu.csv"))
    assert [g.pop("driver_version") for g in gpus] == [exp["gpubox_nvidia_driver_version"]] * len(gpus)
    want = [{k: v for k, v in g.items() if k != "numa_node"} for g in exp["gpubox_gpus"]]
    assert gpus == want


def test_parse_query_gpu_rtx3090_types_and_links():
    gpus = parse_query_gpu(read("rtx3090_8x", "query_gpu.csv"))
    assert len(gpus) == 8
    assert {g["name"] for g in gpus} == {"NVIDIA GeForce RTX 3090"}
    assert all(g["memory_total_mib"] == 24576 and isinstance(g["memory_total_mib"], int) for g in gpus)
    assert [g["pcie_link_width_current"] for g in gpus] == [16, 16, 8, 16, 16, 8, 8, 4]
    assert [g["pcie_link_width_max"] for g in gpus] == [16, 16, 8, 16, 16, 16, 8, 4]
    assert [g["pcie_link_gen_current"] for g in gpus] == [4, 4, 4, 3, 4, 3, 4, 1]
    assert {g["pcie_link_gen_max"] for g in gpus} == {4}
    assert gpus[5]["pci_bus_id"] == "00000000:A1:00.0"
    assert all(g["mig_mode"] is None for g in gpus)  # [N/A] on GeForce
    assert all(g["persistence_mode"] is True for g in gpus)
    assert {g["compute_capability"] for g in gpus} == {"8.6"}


def test_parse_query_gpu_blackwell_and_mig():
    (rtx,) = parse_query_gpu(read("rtx6000_blackwell_1x", "query_gpu.csv"))
    assert rtx["name"] == "NVIDIA RTX PRO 6000 Blackwell Workstation Edition"
    assert rtx["memory_total_mib"] == 97887
    assert rtx["compute_capability"] == "12.0"
    assert (rtx["pcie_link_gen_current"], rtx["pcie_link_width_current"]) == (5, 16)
    a100 = parse_query_gpu(read("a100_mig", "query_gpu.csv"))
    assert [g["mig_mode"] for g in a100] == ["Enabled", "Disabled"]
    assert [g["memory_total_mib"] for g in a100] == [81920, 81920]


def test_parse_query_gpu_not_available_values_become_none():
    line = (
        "0, GPU-0b1e6c1a-52f3-4f1e-9a41-1c0f3d0c9e11, NVIDIA GB10, 0000000F:01:00.0, 580.95.05, "
        "[N/A], [Not Supported], 12.1, [N/A], [N/A], [N/A], [N/A], [N/A], N/A\n"
    )
    (gpu,) = parse_query_gpu(line)
    assert gpu["pci_bus_id"] == "0000000F:01:00.0"
    for key in (
        "memory_total_mib",
        "memory_used_mib",
        "pcie_link_gen_current",
        "pcie_link_gen_max",
        "pcie_link_width_current",
        "pcie_link_width_max",
        "persistence_mode",
        "mig_mode",
    ):
        assert gpu[key] is None, key
    assert gpu["compute_capability"] == "12.1"


def test_parse_query_gpu_accepts_units_and_short_bus_ids():
    line = "3, GPU-x, Tesla T4, 0000:3b:00.0, 535.1, 15360 MiB, 0 MiB, 7.5, 1, 3, 16, 16, Disabled, [N/A]"
    (gpu,) = parse_query_gpu(line)
    assert gpu["index"] == 3
    assert gpu["pci_bus_id"] == "00000000:3B:00.0"
    assert (gpu["memory_total_mib"], gpu["memory_used_mib"]) == (15360, 0)
    assert gpu["persistence_mode"] is False


def test_parse_query_gpu_empty_output_is_no_gpus():
    assert parse_query_gpu("") == []
    assert parse_query_gpu("\n\n") == []


def test_parse_query_gpu_truncated_fixture():
    with pytest.raises(NvidiaSmiParseError) as err:
        parse_query_gpu(read("malformed", "query_gpu.csv"))
    assert err.value.line_number == 3
    assert "line 3" in str(err.value)
    assert "expected 14 fields, got 4" in str(err.value)
    assert err.value.line.startswith("2, GPU-")


@pytest.mark.parametrize(
    "replace, field",
    [
        ("46068", "memory.total"),
        ("41520", "memory.used"),
    ],
)
def test_parse_query_gpu_non_numeric_memory(replace, field):
    lines = read("l40s_4x", "query_gpu.csv").splitlines()
    lines[1] = lines[1].replace(replace, "lots", 1)
    with pytest.raises(NvidiaSmiParseError) as err:
        parse_query_gpu("\n".join(lines))
    assert err.value.line_number == 2
    assert field in str(err.value) and "'lots'" in str(err.value)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("Enabled, [N/A]", "Maybe, [N/A]", "persistence_mode"),
        ("Enabled, [N/A]", "Enabled, Sometimes", "mig.mode.current"),
        ("8.9", "sm_89", "compute_cap"),
        ("00000000:43:00.0", "slot-3", "pci.bus_id"),
        ("0, GPU", "zero, GPU", "index"),
    ],
)
def test_parse_query_gpu_rejects_bad_values(old, new, message):
    line = read("l40s_4x", "query_gpu.csv").splitlines()[0].replace(old, new, 1)
    with pytest.raises(NvidiaSmiParseError, match=message):
        parse_query_gpu(line)


def test_parse_query_gpu_raises_command_error_on_known_text():
    with pytest.raises(NvidiaSmiCommandError) as err:
        parse_query_gpu(read("driver_mismatch", "output.txt"))
    assert err.value.kind == "driver_library_mismatch"


@pytest.mark.parametrize(
    "value, result",
    [
        ("[N/A]", None),
        ("N/A", None),
        ("[Not Supported]", None),
        ("  ", None),
        (None, None),
        ("[Requested functionality has been deprecated]", None),
        (" Enabled ", "Enabled"),
        ("0", "0"),
    ],
)
def test_na_to_none(value, result):
    assert na_to_none(value) == result


def test_pci_bus_id_normalisation():
    assert normalize_pci_bus_id("0000:c1:00.0") == "00000000:C1:00.0"
    assert normalize_pci_bus_id("00000000:2A:00.0") == "00000000:2A:00.0"
    assert sysfs_pci_address("00000000:C1:00.0") == "0000:c1:00.0"
    assert sysfs_pci_address("00010000:01:00.1") == "10000:01:00.1"
    with pytest.raises(ValueError):
        sysfs_pci_address("GPU0")


# --- topo -m -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BOXES)
def test_parse_topology_matches_expected(case):
    exp = expected(case)["gpubox_gpu_topology"]
    topo = parse_topology(read(case, "topo.txt"))
    assert topo["devices"] == exp["devices"]
    assert topo["gpus"] == exp["gpus"]
    assert topo["nics"] == exp["nics"]
    assert topo["nvlink_groups"] == exp["nvlink_groups"]
    for row, cols in exp["matrix_spot_checks"].items():
        for col, value in cols.items():
            assert topo["matrix"][row][col] == value, (row, col)
    # Symmetric and X on the diagonal.
    for a in topo["devices"]:
        assert topo["matrix"][a][a] == "X"
        for b in topo["devices"]:
            assert topo["matrix"][a][b] == topo["matrix"][b][a]


def test_parse_topology_h100_all_to_all():
    topo = parse_topology(read("h100_sxm_8x", "topo.txt"))
    assert topo["nvlink_groups"] == [[0, 1, 2, 3, 4, 5, 6, 7]]
    assert [g["numa_affinity"] for g in topo["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert topo["gpus"][4]["cpu_affinity"] == "56-111,168-223"
    assert all(g["gpu_numa_id"] is None for g in topo["gpus"])
    assert topo["nics"]["NIC9"] == "mlx5_9" and len(topo["nics"]) == 10
    assert len(topo["matrix"]) == 18
    assert {topo["matrix"]["GPU2"][f"GPU{i}"] for i in range(8) if i != 2} == {"NV18"}
    assert len(topo["matrix"]["NIC0"]) == 18  # NIC rows have only device columns


def test_parse_topology_nvlink_bridge_pair_and_singletons():
    topo = parse_topology(read("rtx3090_8x", "topo.txt"))
    assert topo["nvlink_groups"] == [[0, 1], [2], [3], [4], [5], [6], [7]]
    assert topo["matrix"]["GPU1"]["GPU0"] == "NV4"
    assert topo["matrix"]["GPU3"]["GPU4"] == "SYS"


def test_parse_topology_numa_not_available():
    topo = parse_topology(read("rtx6000_blackwell_1x", "topo.txt"))
    assert topo["gpus"] == [{"index": 0, "cpu_affinity": "0-31", "numa_affinity": None, "gpu_numa_id": None}]
    assert topo["nvlink_groups"] == [[0]]


def test_parse_topology_ansi_underlined_header():
    text = (
        "\t\x1b[4mGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n"
        "GPU0\t X \tNV12\tPXB\t0-63\t0\t\tN/A\n"
        "GPU1\tNV12\t X \tSYS\t64-127\t1\t\tN/A\n"
        "NIC0\tPXB\tSYS\t X \t\t\t\t\n" + LEGEND + "\nNIC Legend:\n\n  NIC0: mlx5_bond_0\n"
    )
    topo = parse_topology(text)
    assert topo["devices"] == ["GPU0", "GPU1", "NIC0"]
    assert topo["nvlink_groups"] == [[0, 1]]
    assert [g["numa_affinity"] for g in topo["gpus"]] == [0, 1]
    assert topo["nics"] == {"NIC0": "mlx5_bond_0"}


def test_parse_topology_space_separated_copy_without_gpu_numa_id():
    # As pasted into issues: tabs expanded, and an older driver without the GPU NUMA ID column.
    text = (
        "        GPU0    GPU1    GPU2    GPU3    CPU Affinity    NUMA Affinity\n"
        "GPU0     X      NV4     SYS     SYS     0-15,32-47      0\n"
        "GPU1    NV4      X      SYS     SYS     0-15,32-47      0\n"
        "GPU2    SYS     SYS      X      NV4     16-31,48-63     1\n"
        "GPU3    SYS     SYS     NV4      X      16-31,48-63     1\n" + LEGEND
    )
    topo = parse_topology(text)
    assert topo["nvlink_groups"] == [[0, 1], [2, 3]]
    assert [g["cpu_affinity"] for g in topo["gpus"]] == ["0-15,32-47"] * 2 + ["16-31,48-63"] * 2
    assert [g["numa_affinity"] for g in topo["gpus"]] == [0, 0, 1, 1]
    assert all(g["gpu_numa_id"] is None for g in topo["gpus"])


def test_parse_topology_errors():
    with pytest.raises(NvidiaSmiParseError, match="no header"):
        parse_topology("nothing to see\n")
    with pytest.raises(NvidiaSmiParseError, match="unknown row"):
        parse_topology("\tGPU0\tCPU Affinity\nGPU9\t X \t0-7\n")
    with pytest.raises(NvidiaSmiParseError, match="line 2: expected 2 columns, got 1"):
        parse_topology("\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \n")
    with pytest.raises(NvidiaSmiCommandError):
        parse_topology(read("no_driver", "output.txt"))


def test_nvlink_groups_are_transitive():
    matrix = {
        "GPU0": {"GPU0": "X", "GPU1": "NV2", "GPU2": "PHB", "GPU3": "PHB"},
        "GPU1": {"GPU0": "NV2", "GPU1": "X", "GPU2": "NV2", "GPU3": "PHB"},
        "GPU2": {"GPU0": "PHB", "GPU1": "NV2", "GPU2": "X", "GPU3": "PHB"},
        "GPU3": {"GPU0": "PHB", "GPU1": "PHB", "GPU2": "PHB", "GPU3": "X"},
    }
    assert nvlink_groups(matrix, [0, 1, 2, 3]) == [[0, 1, 2], [3]]


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BOXES)
def test_parse_versions_from_q(case):
    exp = expected(case)
    assert parse_versions(read(case, "q.txt")) == {
        "driver_version": exp["gpubox_nvidia_driver_version"],
        "cuda_version": exp["gpubox_cuda_version"],
    }


def test_parse_versions_from_banner():
    banner = (
        "+-----------------------------------------------------------------------------------------+\n"
        "| NVIDIA-SMI 570.172.08             Driver Version: 570.172.08     CUDA Version: 12.8     |\n"
        "|-----------------------------------------+------------------------+----------------------+\n"
    )
    assert parse_versions(banner) == {"driver_version": "570.172.08", "cuda_version": "12.8"}
    assert parse_cuda_version(banner.replace("12.8  ", "N/A   ")) is None


def test_parse_versions_unreported_cuda():
    text = (
        "\n==============NVSMI LOG==============\n\n"
        "Timestamp                                 : Wed Jan 14 15:17:09 2026\n"
        "Driver Version                            : 580.105.06\n"
        "CUDA Version                              : Not Found\n"
    )
    assert parse_versions(text) == {"driver_version": "580.105.06", "cuda_version": None}
    assert parse_versions("") == {"driver_version": None, "cuda_version": None}


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, rc, kind",
    [
        ("driver_mismatch", 18, "driver_library_mismatch"),
        ("no_driver", 9, "driver_not_loaded"),
        ("no_devices", 6, "no_devices"),
    ],
)
def test_check_result_known_errors_quote_output(case, rc, kind):
    text = read(case, "output.txt")
    with pytest.raises(NvidiaSmiCommandError) as err:
        check_result(rc, text, "")
    assert err.value.kind == kind
    assert err.value.rc == rc
    assert err.value.hint
    assert text.strip().splitlines()[0] in str(err.value)
    assert f"rc={rc}" in str(err.value)
    assert isinstance(err.value, NvidiaSmiError)


@pytest.mark.parametrize(
    "text, kind",
    [
        (
            "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA "
            "Display Driver is properly installed and present in your system.",
            "library_not_found",
        ),
        ("Failed to initialize NVML: Insufficient Permissions", "nvml_init_failed"),
        ("Failed to initialize NVML: Unknown Error", "nvml_init_failed"),
        (
            "Unable to determine the device handle for GPU0000:41:00.0: GPU is lost.  "
            "Reboot the system to recover this GPU",
            "gpu_lost",
        ),
        ('Field "compute_cap" is not a valid field to query.', "invalid_field"),
    ],
)
def test_detect_error_kinds(text, kind):
    with pytest.raises(NvidiaSmiCommandError) as err:
        detect_error(text)
    assert err.value.kind == kind
    assert err.value.output == text


def test_detect_error_finds_error_in_partial_output():
    # One GPU fell off the bus: the others still print, rc is 0 on some drivers.
    text = read("l40s_4x", "query_gpu.csv").splitlines()[0] + "\n"
    text += "Unable to determine the device handle for GPU0000:44:00.0: Unknown Error\n"
    with pytest.raises(NvidiaSmiCommandError) as err:
        check_result(0, text)
    assert err.value.kind == "gpu_lost"
    assert err.value.rc is None


def test_check_result_unknown_failure_and_success():
    with pytest.raises(NvidiaSmiCommandError) as err:
        check_result(255, "", "Segmentation fault", command="nvidia-smi topo -m")
    assert err.value.kind == "unknown"
    assert 'nvidia-smi topo -m exited with rc=255: "Segmentation fault"' == str(err.value)
    with pytest.raises(NvidiaSmiCommandError, match=r"rc=3: \(no output\)"):
        check_result(3, "", "")
    out = read("l40s_4x", "query_gpu.csv")
    assert check_result(0, out, "") == out


def test_module_utils_is_pure():
    with open(nvidia_smi.__file__) as handle:
        source = handle.read()
    assert "subprocess" not in source and "run_command" not in source
