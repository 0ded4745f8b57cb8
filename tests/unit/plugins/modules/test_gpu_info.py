"""Unit tests for the gpubox.llm.gpu_info module.

The module runs a real subprocess: a fake ``nvidia-smi`` written to a tmp dir replays the
recorded outputs in tests/unit/fixtures/nvidia_smi/<case>/ and exits with the rc given in
that case's expected.yml.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic

from ansible_collections.gpubox.llm.plugins.modules import gpu_info

from .utils import run_module

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "nvidia_smi"))
BOXES = ["rtx6000_blackwell_1x", "rtx3090_8x", "l40s_4x", "h100_sxm_8x", "a100_mig"]
ERRORS = ["driver_mismatch", "no_driver", "no_devices", "malformed"]

# The field order the fixtures' query_gpu.csv files were recorded with.
RECORDED_FIELDS = (
    "index,uuid,name,pci.bus_id,driver_version,memory.total,memory.used,compute_cap,"
    "pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,"
    "persistence_mode,mig.mode.current"
)

FAKE = r'''#!{python}
"""Fake nvidia-smi: replays recorded output for the command it is asked to run."""
import json
import os
import sys

CONF = json.loads({conf!r})
args = sys.argv[1:]
with open(CONF["log"], "a") as log:
    log.write(json.dumps(args) + "\n")

if any(a.startswith("--query-gpu=") for a in args):
    cmd = "query_gpu"
    fields = [a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")][0]
    if fields != CONF["fields"] or "--format=csv,noheader,nounits" not in args:
        print("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
        sys.exit(2)
elif args == ["topo", "-m"]:
    cmd = "topo"
elif args[:1] == ["-q"]:
    cmd = "q"
else:
    print("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
    sys.exit(2)

override = CONF["override"].get(cmd)
if override is not None:
    sys.stdout.write(override["output"])
    sys.exit(override["rc"])
for name in CONF["files"][cmd] + ["output.txt"]:
    path = os.path.join(CONF["case"], name)
    if os.path.exists(path):
        with open(path) as handle:
            sys.stdout.write(handle.read())
        break
else:
    sys.stderr.write("fake nvidia-smi: no recorded output for %s\n" % cmd)
    sys.exit(99)
sys.exit(CONF["rc"].get(cmd, CONF["rc"].get("default", 0)))
'''


def load_case(case):
    with open(os.path.join(FIXTURES, case, "expected.yml")) as handle:
        return yaml.safe_load(handle)


def write_fake(directory, case, override=None, name="nvidia-smi"):
    """Write a fake nvidia-smi replaying ``case``; return (path, log path)."""
    log = os.path.join(str(directory), "calls.log")
    conf = {
        "case": os.path.join(FIXTURES, case),
        "rc": load_case(case)["commands"],
        "files": {"query_gpu": ["query_gpu.csv"], "topo": ["topo.txt"], "q": ["q.txt"]},
        "fields": RECORDED_FIELDS,
        "override": override or {},
        "log": log,
    }
    path = os.path.join(str(directory), name)
    with open(path, "w") as handle:
        handle.write(FAKE.format(python=sys.executable, conf=json.dumps(conf)))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path, log


def calls(log):
    with open(log) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    """Point the module's sysfs root at a tmp dir; returns a function filling it from a case."""
    root = tmp_path / "sys_bus_pci_devices"
    root.mkdir()
    monkeypatch.setattr(gpu_info, "SYSFS_PCI_DEVICES", str(root))

    def fill(case):
        for address, node in load_case(case).get("sysfs_numa_node", {}).items():
            (root / address).mkdir()
            (root / address / "numa_node").write_text(f"{node}\n")

    return fill


@pytest.fixture
def warnings():
    """Collect module.warn() messages."""
    seen = []
    with mock.patch.object(basic.AnsibleModule, "warn", lambda self, msg, **kw: seen.append(msg)):
        yield seen


def run_case(tmp_path, case, check_mode=False, override=None, args=None):
    path, log = write_fake(tmp_path, case, override=override)
    params = {"nvidia_smi_path": path}
    params.update(args or {})
    result, failed = run_module(gpu_info.main, params, check_mode=check_mode)
    return result, failed, log


# --- every recorded box ----------------------------------------------------------------------


@pytest.mark.parametrize("case", BOXES)
def test_box_facts_match_expected(case, tmp_path, sysfs, warnings):
    sysfs(case)
    exp = load_case(case)["expected"]
    result, failed, log = run_case(tmp_path, case)
    assert not failed, result
    assert result["changed"] is False
    assert warnings == []
    facts = result["ansible_facts"]
    assert facts["gpubox_nvidia_smi_present"] is True
    assert facts["gpubox_nvidia_driver_version"] == exp["gpubox_nvidia_driver_version"]
    assert facts["gpubox_cuda_version"] == exp["gpubox_cuda_version"]
    assert facts["gpubox_gpus"] == exp["gpubox_gpus"]
    topo, exp_topo = facts["gpubox_gpu_topology"], exp["gpubox_gpu_topology"]
    for key in ("available", "devices", "gpus", "nics", "nvlink_groups"):
        assert topo[key] == exp_topo[key], key
    for row, cols in exp_topo["matrix_spot_checks"].items():
        for col, value in cols.items():
            assert topo["matrix"][row][col] == value
    # Exactly the three read-only commands, query first.
    assert calls(log) == [
        ["--query-gpu=" + RECORDED_FIELDS, "--format=csv,noheader,nounits"],
        ["topo", "-m"],
        ["-q", "-d", "COMPUTE"],
    ]


def test_rtx6000_blackwell(tmp_path, sysfs):
    sysfs("rtx6000_blackwell_1x")
    result, failed, _log = run_case(tmp_path, "rtx6000_blackwell_1x")
    assert not failed
    facts = result["ansible_facts"]
    (gpu,) = facts["gpubox_gpus"]
    assert gpu["name"] == "NVIDIA RTX PRO 6000 Blackwell Workstation Edition"
    assert gpu["memory_total_mib"] == 97887
    assert gpu["compute_capability"] == "12.0"
    assert (gpu["pcie_link_gen_current"], gpu["pcie_link_gen_max"]) == (5, 5)
    assert (gpu["pcie_link_width_current"], gpu["pcie_link_width_max"]) == (16, 16)
    assert gpu["mig_mode"] == "Disabled"
    assert gpu["persistence_mode"] is True
    # topo says N/A and sysfs says -1: unknown.
    assert gpu["numa_node"] is None
    assert facts["gpubox_cuda_version"] == "13.0"
    assert facts["gpubox_gpu_topology"]["nvlink_groups"] == [[0]]


def test_numa_na_in_topology_falls_back_to_sysfs(tmp_path, sysfs):
    sysfs_root = gpu_info.SYSFS_PCI_DEVICES
    os.makedirs(os.path.join(sysfs_root, "0000:01:00.0"))
    with open(os.path.join(sysfs_root, "0000:01:00.0", "numa_node"), "w") as handle:
        handle.write("0\n")
    result, failed, _log = run_case(tmp_path, "rtx6000_blackwell_1x")
    assert not failed
    assert result["ansible_facts"]["gpubox_gpus"][0]["numa_node"] == 0
    assert result["ansible_facts"]["gpubox_gpu_topology"]["gpus"][0]["numa_affinity"] is None


def test_rtx3090_mixed_links_and_numa(tmp_path, sysfs):
    result, failed, _log = run_case(tmp_path, "rtx3090_8x")  # sysfs left empty: topo is enough
    assert not failed
    facts = result["ansible_facts"]
    gpus = facts["gpubox_gpus"]
    assert len(gpus) == 8
    assert [g["index"] for g in gpus] == list(range(8))
    assert [g["pcie_link_width_current"] for g in gpus] == [16, 16, 8, 16, 16, 8, 8, 4]
    assert [g["pcie_link_gen_current"] for g in gpus] == [4, 4, 4, 3, 4, 3, 4, 1]
    assert [g["numa_node"] for g in gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert sum(g["memory_total_mib"] for g in gpus) == 8 * 24576
    assert gpus[7]["pci_bus_id"] == "00000000:E1:00.0"
    assert facts["gpubox_gpu_topology"]["nvlink_groups"] == [[0, 1], [2], [3], [4], [5], [6], [7]]
    assert facts["gpubox_gpu_topology"]["matrix"]["GPU0"]["GPU1"] == "NV4"
    assert facts["gpubox_cuda_version"] == "12.9"


def test_l40s(tmp_path, sysfs):
    result, failed, _log = run_case(tmp_path, "l40s_4x")
    assert not failed
    facts = result["ansible_facts"]
    assert [g["memory_total_mib"] for g in facts["gpubox_gpus"]] == [46068] * 4
    assert {g["compute_capability"] for g in facts["gpubox_gpus"]} == {"8.9"}
    assert {g["mig_mode"] for g in facts["gpubox_gpus"]} == {None}
    assert {g["pcie_link_gen_max"] for g in facts["gpubox_gpus"]} == {4}
    assert facts["gpubox_gpu_topology"]["nvlink_groups"] == [[0], [1], [2], [3]]
    assert facts["gpubox_gpu_topology"]["nics"] == {"NIC0": "mlx5_0"}
    assert facts["gpubox_gpu_topology"]["matrix"]["GPU1"]["NIC0"] == "PIX"


def test_h100_nvswitch(tmp_path, sysfs):
    result, failed, _log = run_case(tmp_path, "h100_sxm_8x")
    assert not failed
    facts = result["ansible_facts"]
    assert len(facts["gpubox_gpus"]) == 8
    assert {g["name"] for g in facts["gpubox_gpus"]} == {"NVIDIA H100 80GB HBM3"}
    assert {g["memory_total_mib"] for g in facts["gpubox_gpus"]} == {81559}
    assert [g["numa_node"] for g in facts["gpubox_gpus"]] == [0] * 4 + [1] * 4
    assert facts["gpubox_gpu_topology"]["nvlink_groups"] == [list(range(8))]
    assert facts["gpubox_nvidia_driver_version"] == "550.163.01"
    assert facts["gpubox_cuda_version"] == "12.4"


def test_a100_mig(tmp_path, sysfs):
    result, failed, _log = run_case(tmp_path, "a100_mig")
    assert not failed
    gpus = result["ansible_facts"]["gpubox_gpus"]
    assert [g["mig_mode"] for g in gpus] == ["Enabled", "Disabled"]
    assert [g["memory_used_mib"] for g in gpus] == [61, 73412]
    assert {g["compute_capability"] for g in gpus} == {"8.0"}


# --- failures of the main query ------------------------------------------------------------


@pytest.mark.parametrize("case", ERRORS)
def test_error_cases_fail_and_quote_output(case, tmp_path, sysfs):
    exp = load_case(case)["expected"]
    result, failed, log = run_case(tmp_path, case)
    assert failed is True
    assert exp["failed"] is True
    for text in exp["msg_contains"]:
        assert text in result["msg"], (text, result["msg"])
    if "rc" in exp:
        assert result["rc"] == exp["rc"]
    assert "ansible_facts" not in result
    # The main query failing stops the module before topology is read.
    assert [c[0] for c in calls(log)] == ["--query-gpu=" + RECORDED_FIELDS]


def test_driver_mismatch_message(tmp_path, sysfs):
    result, failed, _log = run_case(tmp_path, "driver_mismatch")
    assert failed
    assert result["msg"].startswith(
        'nvidia-smi reported an error (rc=18): "Failed to initialize NVML: Driver/library version mismatch'
    )
    assert "Failed to initialize NVML" in result["stdout"]


def test_unknown_nonzero_exit_fails(tmp_path, sysfs):
    override = {"query_gpu": {"rc": 255, "output": "Unexpected internal error\n"}}
    result, failed, _log = run_case(tmp_path, "l40s_4x", override=override)
    assert failed
    assert result["rc"] == 255
    assert 'rc=255: "Unexpected internal error"' in result["msg"]


# --- missing nvidia-smi ----------------------------------------------------------------------


def test_missing_nvidia_smi_is_not_an_error():
    with mock.patch.object(basic.AnsibleModule, "get_bin_path", return_value=None):
        result, failed = run_module(gpu_info.main, {})
    assert not failed
    assert result["changed"] is False
    facts = result["ansible_facts"]
    assert facts["gpubox_nvidia_smi_present"] is False
    assert facts["gpubox_gpus"] == []
    assert facts["gpubox_nvidia_driver_version"] is None
    assert facts["gpubox_cuda_version"] is None
    assert facts["gpubox_gpu_topology"]["available"] is False
    assert facts["gpubox_gpu_topology"]["nvlink_groups"] == []


def test_missing_nvidia_smi_required_fails_with_install_hint():
    with mock.patch.object(basic.AnsibleModule, "get_bin_path", return_value=None):
        result, failed = run_module(gpu_info.main, {"required": True})
    assert failed
    assert "nvidia-smi was not found" in result["msg"]
    assert "gpubox.llm.nvidia_driver" in result["msg"]
    assert "distribution" in result["msg"]


def test_nonexistent_path_is_missing(tmp_path, warnings):
    path = str(tmp_path / "nope" / "nvidia-smi")
    result, failed = run_module(gpu_info.main, {"nvidia_smi_path": path})
    assert not failed
    assert result["ansible_facts"]["gpubox_nvidia_smi_present"] is False
    assert any(path in w for w in warnings)
    result, failed = run_module(gpu_info.main, {"nvidia_smi_path": path, "required": True})
    assert failed and "gpubox.llm.nvidia_driver" in result["msg"]


def test_default_lookup_in_path(tmp_path, sysfs, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_fake(bindir, "l40s_4x")
    monkeypatch.setenv("PATH", str(bindir))
    result, failed = run_module(gpu_info.main, {})
    assert not failed, result
    assert result["ansible_facts"]["gpubox_nvidia_smi_present"] is True
    assert len(result["ansible_facts"]["gpubox_gpus"]) == 4


# --- best-effort parts ------------------------------------------------------------------------


def test_topology_failure_warns_and_falls_back_to_sysfs(tmp_path, sysfs, warnings):
    sysfs("rtx3090_8x")
    override = {"topo": {"rc": 255, "output": "Failed to get topology information: Unknown Error\n"}}
    result, failed, _log = run_case(tmp_path, "rtx3090_8x", override=override)
    assert not failed, result
    facts = result["ansible_facts"]
    assert facts["gpubox_gpu_topology"] == {
        "available": False,
        "devices": [],
        "matrix": {},
        "gpus": [],
        "nics": {},
        "nvlink_groups": [],
    }
    assert [g["numa_node"] for g in facts["gpubox_gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert len(facts["gpubox_gpus"]) == 8
    assert facts["gpubox_cuda_version"] == "12.9"
    (warning,) = warnings
    assert "best effort" in warning
    assert "Failed to get topology information" in warning


def test_topology_failure_without_sysfs_gives_unknown_numa(tmp_path, sysfs, warnings):
    override = {"topo": {"rc": 0, "output": "garbage\n"}}
    result, failed, _log = run_case(tmp_path, "h100_sxm_8x", override=override)
    assert not failed
    assert [g["numa_node"] for g in result["ansible_facts"]["gpubox_gpus"]] == [None] * 8
    assert len(warnings) == 1 and "no header line with GPU0" in warnings[0]


def test_cuda_version_failure_is_a_warning(tmp_path, sysfs, warnings):
    override = {"q": {"rc": 4, "output": "Insufficient Permissions\n"}}
    result, failed, _log = run_case(tmp_path, "l40s_4x", override=override)
    assert not failed
    assert result["ansible_facts"]["gpubox_cuda_version"] is None
    assert result["ansible_facts"]["gpubox_nvidia_driver_version"] == "570.172.08"
    assert len(warnings) == 1 and "CUDA version" in warnings[0]


# --- check mode -------------------------------------------------------------------------------


def test_check_mode_reports_the_same_facts(tmp_path, sysfs):
    normal, failed, log = run_case(tmp_path, "h100_sxm_8x")
    assert not failed
    first = calls(log)
    checked, failed, log = run_case(tmp_path, "h100_sxm_8x", check_mode=True)
    assert not failed
    assert checked["changed"] is False
    assert checked["ansible_facts"] == normal["ansible_facts"]
    assert len(checked["ansible_facts"]["gpubox_gpus"]) == 8
    assert calls(log)[len(first) :] == first
