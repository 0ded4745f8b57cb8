"""The nvidia_driver role decides and refuses in preflight, before any change.

Each case runs the real role on localhost in check mode as another OS (injected facts), with a fake PCI
sysfs tree handed to gpubox.llm.nvidia_driver_facts through module_defaults. Tags stop the run before any
package manager call, which cannot work for a foreign OS here.
"""

from __future__ import annotations

import pytest

from ..plugins.modules.fake_sysfs import make_host
from .rolerun import os_facts, run_role

H100 = {"device_id": "0x2330"}
L40S = {"device_id": "0x26b9"}
RTX3090 = {"device_id": "0x2204"}
P40 = {"device_id": "0x1b38"}
V100 = {"device_id": "0x1db4"}
RTX5090 = {"device_id": "0x2b85"}
PRO6000 = {"device_id": "0x2bb1"}
PREFLIGHT = ("nvidia_driver_preflight",)
REPOS = ("nvidia_driver_preflight", "nvidia_driver_repository")


KERNELS = {"debian": "6.1.0-28-amd64", "ubuntu": "6.8.0-49-generic", "rocky": "5.14.0-503.14.1.el9_5.x86_64"}


def _run(tmp_path, os_name="debian12", gpus=(L40S,), variables=None, tags=PREFLIGHT, **host):
    host.setdefault("kernel_release", KERNELS[os_name.rstrip("0123456789")])
    paths = make_host(tmp_path / "host", gpus=[dict(g) for g in gpus], **host)
    return run_role(
        tmp_path,
        "nvidia_driver",
        variables=variables or {},
        facts=os_facts(os_name),
        tags=tags,
        module_defaults={"gpubox.llm.nvidia_driver_facts": paths},
    )


def _plan(run):
    return run.result("Preflight | Record the plan")["ansible_facts"]["nvidia_driver_plan"]


def _changed(run):
    return [name for name, result in run.tasks() if result.get("changed")]


def test_no_gpu_skips_with_a_message(tmp_path):
    run = _run(tmp_path, gpus=())
    assert run.rc == 0, run.output
    assert _plan(run)["skip"] is True
    assert "does nothing here" in run.result("Skip a host without NVIDIA GPUs")["msg"]


@pytest.mark.parametrize(
    ("os_name", "gpus", "variables", "expected"),
    [
        (
            "debian12",
            (L40S, L40S),
            {},
            {
                "source": "distro",
                "branch": 535,
                "kernel_module": "open",
                "packages": [
                    "nvidia-open-kernel-dkms",
                    "linux-headers-6.1.0-28-amd64",
                    "linux-headers-amd64",
                    "nvidia-smi",
                    "libcuda1",
                    "libnvidia-cfg1",
                    "firmware-nvidia-gsp",
                    "nvidia-persistenced",
                ],
            },
        ),
        (
            "debian12",
            (P40,),
            {"nvidia_driver_version": "535.261.03"},
            {
                "kernel_module": "proprietary",
                "packages": [
                    "nvidia-kernel-dkms=535.261.03-*",
                    "linux-headers-6.1.0-28-amd64",
                    "linux-headers-amd64",
                    "nvidia-smi=535.261.03-*",
                    "libcuda1=535.261.03-*",
                    "libnvidia-cfg1=535.261.03-*",
                    "firmware-nvidia-gsp=535.261.03-*",
                    "nvidia-persistenced",
                ],
            },
        ),
        ("debian13", (RTX3090,), {}, {"branch": 550, "kernel_module": "open"}),
        (
            "ubuntu2404",
            (PRO6000,),
            {"nvidia_driver_branch": 580},
            {
                "source": "distro",
                "kernel_module": "open",
                "dkms": False,
                "packages": [
                    "linux-modules-nvidia-580-server-open-generic",
                    "nvidia-headless-no-dkms-580-server-open",
                    "nvidia-utils-580-server",
                ],
            },
        ),
        (
            "ubuntu2204",
            (V100,),
            {"nvidia_driver_branch": 570, "nvidia_driver_headless": False},
            {
                "kernel_module": "proprietary",
                "packages": ["linux-modules-nvidia-570-server-generic", "nvidia-driver-570-server"],
            },
        ),
        (
            "rocky9",
            (H100,) * 8,
            {"nvidia_driver_branch": 570},
            {
                "source": "cuda_repo",
                "packages": [
                    "kernel-devel-5.14.0-503.14.1.el9_5.x86_64",
                    "kernel-headers-5.14.0-503.14.1.el9_5.x86_64",
                    "@nvidia-driver:570-open",
                ],
            },
        ),
        (
            "rocky8",
            (V100,),
            {"nvidia_driver_branch": 550},
            {
                "packages": [
                    "kernel-devel-5.14.0-503.14.1.el9_5.x86_64",
                    "kernel-headers-5.14.0-503.14.1.el9_5.x86_64",
                    "@nvidia-driver:550-dkms",
                ]
            },
        ),
        (
            "ubuntu2204",
            (H100,),
            {"nvidia_driver_source": "cuda_repo", "nvidia_driver_branch": 575},
            {
                "dkms": True,
                "packages": [
                    "linux-headers-6.8.0-49-generic",
                    "linux-headers-generic",
                    "nvidia-headless-575-open",
                    "nvidia-utils-575",
                ],
            },
        ),
    ],
    ids=[
        "debian12-l40s",
        "debian12-pascal-pinned",
        "debian13",
        "ubuntu2404-blackwell",
        "ubuntu2204-volta-full",
        "rocky9-h100",
        "rocky8-volta",
        "ubuntu-cuda-repo",
    ],
)
def test_plan(tmp_path, os_name, gpus, variables, expected):
    run = _run(tmp_path, os_name, gpus, variables)
    assert run.rc == 0, run.failure() or run.output
    plan = _plan(run)
    for key, value in expected.items():
        assert plan[key] == value, (key, plan)
    assert _changed(run) == []


def test_nvswitch_brings_the_fabric_manager(tmp_path):
    paths_gpus = (H100,) * 8
    run = _run(
        tmp_path,
        "ubuntu2404",
        paths_gpus,
        {"nvidia_driver_branch": 570},
        nvswitches=[{"device_id": "0x22a3"}] * 4,
    )
    assert run.rc == 0, run.failure() or run.output
    plan = _plan(run)
    assert plan["fabric_manager"] is True
    assert plan["fabric_manager_packages"] == ["nvidia-fabricmanager-570", "libnvidia-nscq-570"]
    assert "nvidia-fabricmanager-570" in plan["hold"]


def test_hgx_b200_brings_the_fabric_manager(tmp_path):
    # The NVSwitches of an HGX B200 baseboard are not on the host's PCI bus.
    run = _run(tmp_path, "ubuntu2404", ({"device_id": "0x2901"},) * 8, {"nvidia_driver_source": "cuda_repo"})
    assert run.rc == 0, run.failure() or run.output
    assert _plan(run)["fabric_manager_packages"] == ["nvidia-fabricmanager-580"]


@pytest.mark.parametrize(
    ("os_name", "gpus", "variables", "host_and_expected"),
    [
        ("debian12", (L40S,), {"nvidia_driver_branch": 570}, ({}, "Debian ships one branch per release")),
        (
            "ubuntu2404",
            (L40S,),
            {"nvidia_driver_branch": 999},
            ({}, "is not offered by the distro source on ubuntu2404"),
        ),
        ("rocky9", (L40S,), {"nvidia_driver_source": "distro"}, ({}, "EL distributions ship no NVIDIA driver")),
        ("debian12", (P40,), {"nvidia_driver_kernel_module": "open"}, ({}, "0000:01:00.0")),
        ("ubuntu2404", (RTX5090,), {"nvidia_driver_kernel_module": "proprietary"}, ({}, "0000:01:00.0")),
        ("ubuntu2404", (RTX5090, P40), {}, ({}, "0000:02:00.0")),
        ("debian12", (RTX5090,), {}, ({}, "570")),
        (
            "debian12",
            (L40S,),
            {"nvidia_driver_branch": 535, "nvidia_driver_version": "550.127.05"},
            ({}, "and belong to nvidia_driver_branch 535"),
        ),
        ("debian12", (L40S,), {"nvidia_driver_version": "535.latest"}, ({}, "must look like 535.261.03")),
        ("rocky9", (L40S,), {"nvidia_driver_version": "580.95.05"}, ({}, "cannot be pinned on EL")),
        ("debian12", (L40S,), {"nvidia_driver_reboot_ok": True}, ({}, "would reboot the controller")),
        ("debian12", (H100,), {"nvidia_driver_fabric_manager": "yes"}, ({}, "Debian's archive has none")),
        ("debian12", (L40S,), {}, ({"secure_boot": True}, "mokutil --import")),
        (
            "debian12",
            (L40S,),
            {},
            (
                {"loaded_version": "535.216.01", "installed_version": "535.261.03"},
                "NVML: Driver/library version mismatch",
            ),
        ),
    ],
    ids=[
        "debian-other-branch",
        "unknown-branch",
        "distro-on-el",
        "open-on-pascal",
        "proprietary-on-blackwell",
        "blackwell-with-pascal",
        "blackwell-on-debian-535",
        "version-outside-branch",
        "malformed-version",
        "exact-version-on-el",
        "reboot-local",
        "fabric-manager-on-debian",
        "secure-boot-without-key",
        "drift",
    ],
)
def test_bad_input_fails_before_any_change(tmp_path, os_name, gpus, variables, host_and_expected):
    host, expected = host_and_expected
    run = _run(tmp_path, os_name, gpus, variables, **host)
    assert run.rc != 0, run.output
    failure = run.failure()
    assert failure is not None, run.output
    assert expected in " ".join(failure.split()), failure
    assert _changed(run) == []


def test_secure_boot_is_fine_with_canonical_signed_modules(tmp_path):
    run = _run(tmp_path, "ubuntu2404", (L40S,), {"nvidia_driver_branch": 580}, secure_boot=True)
    assert run.rc == 0, run.failure() or run.output
    assert _plan(run)["secure_boot"] is True


def test_secure_boot_can_be_skipped(tmp_path):
    run = _run(tmp_path, "debian12", (L40S,), {"nvidia_driver_secure_boot_skip": True}, secure_boot=True)
    assert run.rc == 0, run.failure() or run.output


def test_drift_can_warn(tmp_path):
    run = _run(
        tmp_path,
        "debian12",
        (L40S,),
        {"nvidia_driver_drift_action": "warn"},
        loaded_version="535.216.01",
        installed_version="535.261.03",
    )
    assert run.rc == 0, run.failure() or run.output


def test_debian_components_file(tmp_path):
    # This machine's apt has no NVIDIA packages, so the role adds the non-free components.
    run = _run(tmp_path, "debian12", (L40S,), tags=REPOS)
    assert run.rc == 0, run.failure() or run.output
    text = run.rendered("/etc/apt/sources.list.d/gpubox-nvidia-nonfree.sources")
    assert "Suites: bookworm bookworm-updates\n" in text
    assert "Components: contrib non-free non-free-firmware\n" in text
    assert "URIs: http://deb.debian.org/debian-security\n" in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text


@pytest.mark.parametrize(
    ("os_name", "path", "expected"),
    [
        (
            "ubuntu2404",
            "/etc/apt/sources.list.d/cuda-ubuntu2404-x86_64.sources",
            [
                "URIs: https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/\n",
                "Signed-By: /etc/apt/keyrings/cuda-archive-keyring.asc\n",
            ],
        ),
        (
            "rocky9",
            "yum.repos.d/cuda-rhel9.repo",
            [
                "baseurl=https://developer.download.nvidia.com/compute/cuda/repos/rhel9/x86_64\n",
                "gpgcheck=1\n",
            ],
        ),
    ],
)
def test_cuda_repo_source_writes_nvidia_repository(tmp_path, os_name, path, expected):
    # The driver role brings NVIDIA's repository through gpubox.llm.cuda_repo, under the driver's own tags.
    repos = tmp_path / "yum.repos.d"
    repos.mkdir()
    paths = make_host(tmp_path / "host", gpus=[dict(L40S)], kernel_release=KERNELS[os_name.rstrip("0123456789")])
    run = run_role(
        tmp_path,
        "nvidia_driver",
        variables={"nvidia_driver_source": "cuda_repo", "cuda_repo_yum_repos_dir": str(repos)},
        facts=os_facts(os_name),
        tags=REPOS,
        module_defaults={"gpubox.llm.nvidia_driver_facts": paths},
        # No key download, and no package manager for a foreign OS here.
        extra_args=("--skip-tags", "cuda_repo_install,cuda_repo_verify"),
    )
    assert run.rc == 0, run.failure() or run.output
    text = run.rendered(str(repos / "cuda-rhel9.repo") if os_name == "rocky9" else path)
    for line in expected:
        assert line in text
