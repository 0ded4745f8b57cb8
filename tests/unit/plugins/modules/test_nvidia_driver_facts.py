"""Unit tests for the gpubox.llm.nvidia_driver_facts module, on fake sysfs/procfs/root trees."""

from __future__ import annotations

import os
import stat
import sys
from unittest import mock

import pytest
from ansible.module_utils import basic

from ansible_collections.gpubox.llm.plugins.modules import nvidia_driver_facts

from .fake_sysfs import make_host
from .utils import run_module

H100 = {"device_id": "0x2330"}
RTX5090 = {"device_id": "0x2b85"}
P40 = {"device_id": "0x1b38"}


@pytest.fixture
def warnings():
    """Collect module.warn() messages."""
    seen = []
    with mock.patch.object(basic.AnsibleModule, "warn", lambda self, msg, **kw: seen.append(msg)):
        yield seen


@pytest.fixture
def no_mokutil():
    """The test machine's own mokutil must never be looked up."""
    with mock.patch.object(basic.AnsibleModule, "get_bin_path", return_value=None) as patched:
        yield patched


def run(paths, check_mode=False, **args):
    params = dict(paths)
    params.update(args)
    result, failed = run_module(nvidia_driver_facts.main, params, check_mode=check_mode)
    assert not failed, result
    return result


def write_fake_mokutil(directory, output, rc=0):
    path = os.path.join(str(directory), "mokutil")
    with open(path, "w") as handle:
        handle.write(f"#!{sys.executable}\nimport sys\nsys.stdout.write({output!r})\nsys.exit({rc})\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_hgx_h100_box(tmp_path, no_mokutil, warnings):
    paths = make_host(
        tmp_path,
        gpus=[dict(H100, numa_node=0 if i < 4 else 1, audio=False) for i in range(8)],
        nvswitches=[{}] * 4,
        secure_boot=True,
        loaded_version="550.163.01",
        loaded_flavour="proprietary",
        installed_version="550.163.01",
        pci_names={"0x2330": "GH100 [H100 SXM5 80GB]", "0x22a3": "GH100 [H100 NVSwitch]"},
    )
    result = run(paths, branch=550)
    assert result["changed"] is False
    assert warnings == []
    facts = result["ansible_facts"]

    pci = facts["gpubox_nvidia_pci"]
    assert pci["gpu_count"] == 8
    assert pci["nvswitch_count"] == 4
    assert [g["address"] for g in pci["gpus"]] == [f"0000:{i:02x}:00.0" for i in range(1, 9)]
    assert [g["numa_node"] for g in pci["gpus"]] == [0] * 4 + [1] * 4
    first = pci["gpus"][0]
    assert first["name"] == "GH100 [H100 SXM5 80GB]"
    assert (first["architecture"], first["chip"], first["open_module"]) == ("hopper", "GH100", "recommended")
    assert (first["min_branch"], first["max_branch"]) == (525, None)
    assert first["driver"] == "nvidia"
    assert first["device_id"] == "0x2330"
    assert first["vendor_id"] == "0x10de"
    assert first["class"] == "0x030200"
    assert first["pcie"] == {"current_gen": 4, "max_gen": 4, "current_width": 16, "max_width": 16, "degraded": False}
    assert {s["device_id"] for s in pci["nvswitches"]} == {"0x22a3"}
    assert {s["generation"] for s in pci["nvswitches"]} == {"NVSwitch gen3 (HGX H100/H200)"}

    assert facts["gpubox_secure_boot"] == {
        "enabled": True,
        "setup_mode": False,
        "source": "efivars",
        "detail": "SecureBoot enabled",
    }
    kernel = facts["gpubox_nvidia_kernel"]
    assert kernel == {
        "loaded": True,
        "loaded_version": "550.163.01",
        "loaded_flavour": "proprietary",
        "installed_version": "550.163.01",
        "installed_versions": ["550.163.01"],
        "drift": False,
        "drift_state": "in_sync",
        "drift_message": kernel["drift_message"],
        "nouveau_loaded": False,
        "kernel_release": "6.1.0-28-amd64",
        "headers_installed": True,
        "container": False,
        "container_type": None,
    }
    assert result["kernel_module"] == "open"
    assert result["kernel_module_problems"] == []
    assert result["branch_problems"] == []
    # efivars answered: mokutil was not looked for.
    assert no_mokutil.call_count == 0


def test_bare_box_before_the_driver(tmp_path, no_mokutil):
    """A fresh Blackwell workstation: nouveau bound, nothing installed, legacy BIOS."""
    paths = make_host(tmp_path, gpus=[dict(RTX5090, driver="nouveau", audio=True)], nouveau=True)
    result = run(paths, kernel_module="auto", branch=535)
    facts = result["ansible_facts"]
    (gpu,) = facts["gpubox_nvidia_pci"]["gpus"]
    assert gpu["driver"] == "nouveau"
    assert gpu["name"] is None  # no pci.ids
    assert (gpu["architecture"], gpu["open_module"], gpu["min_branch"]) == ("blackwell", "required", 570)
    assert facts["gpubox_nvidia_pci"]["nvswitch_count"] == 0
    assert facts["gpubox_secure_boot"]["source"] == "bios"
    assert facts["gpubox_secure_boot"]["enabled"] is False
    kernel = facts["gpubox_nvidia_kernel"]
    assert (kernel["loaded"], kernel["drift_state"], kernel["drift"]) == (False, "absent", False)
    assert kernel["nouveau_loaded"] is True
    assert result["kernel_module"] == "open"
    assert result["kernel_module_problems"] == []
    (problem,) = result["branch_problems"]
    assert "0000:01:00.0 (GB202, Blackwell)" in problem and "570 or newer" in problem


@pytest.mark.parametrize(
    "case",
    [
        ([P40], "auto", "proprietary", None),
        ([P40], "open", None, "0000:01:00.0 (GP102, Pascal)"),
        ([RTX5090], "proprietary", None, "0000:01:00.0 (GB202, Blackwell)"),
        ([RTX5090, P40], "auto", None, "mixes"),
        ([H100], "proprietary", "proprietary", None),
        ([], "auto", "open", None),
    ],
)
def test_impossible_requests_are_returned_not_failed(tmp_path, no_mokutil, case):
    gpus, requested, choice, problem_text = case
    paths = make_host(tmp_path, gpus=gpus)
    result = run(paths, kernel_module=requested)
    assert result["kernel_module"] == choice
    if problem_text:
        (problem,) = result["kernel_module_problems"]
        assert problem_text in problem
    else:
        assert result["kernel_module_problems"] == []
    assert result["branch_problems"] == []


def test_branch_too_new_for_pascal(tmp_path, no_mokutil):
    result = run(make_host(tmp_path, gpus=[P40]), branch=590)
    (problem,) = result["branch_problems"]
    assert "590 is too new" in problem and "580" in problem


def test_drift_mismatch_and_leftovers(tmp_path, no_mokutil, warnings):
    paths = make_host(
        tmp_path,
        gpus=[H100],
        loaded_version="535.261.03",
        loaded_flavour="open",
        installed_version=["535.261.03", "570.124.06"],
    )
    kernel = run(paths)["ansible_facts"]["gpubox_nvidia_kernel"]
    assert kernel["drift_state"] == "mismatch"
    assert kernel["drift"] is True
    assert kernel["loaded_flavour"] == "open"
    assert kernel["installed_version"] == "570.124.06"
    assert kernel["installed_versions"] == ["535.261.03", "570.124.06"]
    assert "Driver/library version mismatch" in kernel["drift_message"]
    assert any("535.261.03, 570.124.06" in w for w in warnings)


def test_installed_not_loaded(tmp_path, no_mokutil):
    paths = make_host(tmp_path, gpus=[H100], installed_version="570.124.06")
    kernel = run(paths)["ansible_facts"]["gpubox_nvidia_kernel"]
    assert (kernel["drift_state"], kernel["drift"], kernel["loaded"]) == ("not_loaded", True, False)


def test_degraded_link(tmp_path, no_mokutil):
    paths = make_host(
        tmp_path,
        gpus=[
            dict(H100, current_link_speed=5, max_link_speed=5, current_link_width=16, max_link_width=16),
            dict(H100, current_link_speed=1, max_link_speed=5),  # idle: not degraded
            dict(H100, current_link_speed=4, max_link_speed=5, current_link_width=8, max_link_width=16),
        ],
    )
    gpus = run(paths)["ansible_facts"]["gpubox_nvidia_pci"]["gpus"]
    assert [g["pcie"]["degraded"] for g in gpus] == [False, False, True]
    assert [g["pcie"]["current_gen"] for g in gpus] == [5, 1, 4]
    assert gpus[2]["pcie"]["current_width"] == 8


def test_container_without_headers(tmp_path, no_mokutil):
    paths = make_host(
        tmp_path,
        gpus=[H100],
        container="podman",
        kernel_release="6.8.0-49-generic",
        headers=False,
        loaded_version="570.124.06",
        installed_version="570.124.06",
    )
    kernel = run(paths)["ansible_facts"]["gpubox_nvidia_kernel"]
    assert (kernel["container"], kernel["container_type"]) == (True, "podman")
    assert kernel["kernel_release"] == "6.8.0-49-generic"
    assert kernel["headers_installed"] is False


@pytest.mark.parametrize(("secure_boot", "setup_mode"), [(False, False), (False, True)])
def test_secure_boot_off_and_setup_mode(tmp_path, no_mokutil, secure_boot, setup_mode):
    paths = make_host(tmp_path, secure_boot=secure_boot, setup_mode=setup_mode)
    state = run(paths)["ansible_facts"]["gpubox_secure_boot"]
    assert (state["enabled"], state["setup_mode"], state["source"]) == (secure_boot, setup_mode, "efivars")


def test_secure_boot_from_mokutil_when_efivars_are_unreadable(tmp_path):
    paths = make_host(tmp_path, gpus=[H100])
    os.makedirs(os.path.join(paths["sysfs_path"], "firmware", "efi", "efivars"))
    mokutil = write_fake_mokutil(tmp_path, "SecureBoot disabled\nPlatform is in Setup Mode\n")
    state = run(paths, mokutil_path=mokutil)["ansible_facts"]["gpubox_secure_boot"]
    assert state == {
        "enabled": False,
        "setup_mode": True,
        "source": "mokutil",
        "detail": "SecureBoot disabled; Platform is in Setup Mode",
    }


def test_secure_boot_unknown_without_mokutil(tmp_path, no_mokutil, warnings):
    paths = make_host(tmp_path)
    os.makedirs(os.path.join(paths["sysfs_path"], "firmware", "efi", "efivars"))
    state = run(paths)["ansible_facts"]["gpubox_secure_boot"]
    assert (state["enabled"], state["source"]) == (None, "unknown")
    assert no_mokutil.call_count == 1
    state = run(paths, mokutil_path=str(tmp_path / "nope"))["ansible_facts"]["gpubox_secure_boot"]
    assert state["source"] == "unknown"
    assert any("does not exist" in w for w in warnings)


def test_pci_ids_path_option(tmp_path, no_mokutil):
    paths = make_host(tmp_path, gpus=[{"device_id": "0x3f00"}])
    ids = tmp_path / "elsewhere.ids"
    ids.write_text("10de  NVIDIA Corporation\n\t3f00  GB300 [B300 Next]\n")
    (gpu,) = run(paths, pci_ids_path=str(ids))["ansible_facts"]["gpubox_nvidia_pci"]["gpus"]
    assert gpu["name"] == "GB300 [B300 Next]"
    assert (gpu["architecture"], gpu["open_module"]) == ("blackwell", "required")
    (gpu,) = run(paths)["ansible_facts"]["gpubox_nvidia_pci"]["gpus"]
    assert gpu["name"] is None
    assert (gpu["architecture"], gpu["open_module"]) == ("unknown-newer", "required")


def test_empty_host(tmp_path, no_mokutil):
    """Nothing at all under the given roots: still a clean answer."""
    result = run(
        {
            "sysfs_path": str(tmp_path / "sys"),
            "procfs_path": str(tmp_path / "proc"),
            "root_path": str(tmp_path / "root"),
        }
    )
    facts = result["ansible_facts"]
    assert facts["gpubox_nvidia_pci"] == {"gpus": [], "nvswitches": [], "gpu_count": 0, "nvswitch_count": 0}
    assert facts["gpubox_nvidia_kernel"]["kernel_release"] is None
    assert facts["gpubox_nvidia_kernel"]["headers_installed"] is False
    assert result["kernel_module"] == "open"


def test_check_mode_reports_the_same(tmp_path, no_mokutil):
    paths = make_host(
        tmp_path,
        gpus=[H100, RTX5090],
        nvswitches=[{}],
        secure_boot=True,
        loaded_version="570.124.06",
        installed_version="570.124.06",
    )
    normal = run(paths, branch=570)
    checked = run(paths, check_mode=True, branch=570)
    assert checked["changed"] is False
    assert checked == normal
    assert checked["ansible_facts"]["gpubox_nvidia_pci"]["gpu_count"] == 2


def test_invalid_kernel_module_choice_fails(tmp_path):
    result, failed = run_module(nvidia_driver_facts.main, {"kernel_module": "closed", "sysfs_path": str(tmp_path)})
    assert failed
    assert "kernel_module" in result["msg"]
