"""The cuda_toolkit role decides and refuses in preflight, before any change, and renders /etc/profile.d/cuda.sh.

Each case runs the real role on localhost in check mode as another OS (injected facts). The install phase (NVIDIA's
repository, apt or dnf) cannot work for a foreign OS here, so runs skip it; the rendered profile script is then
sourced by a real sh, and the verify phase runs against a fake nvcc.
"""

from __future__ import annotations

import subprocess

import pytest

from .rolerun import os_facts, run_role

# rolerun's tags=[...] selects tasks by tag, which leaves out its own untagged include of the role; skipping the
# phases that need a package manager keeps the rest.
OFFLINE = ("--skip-tags", "cuda_toolkit_install,cuda_toolkit_verify")
PROFILE = "/etc/profile.d/cuda.sh"
ON = {"cuda_toolkit_enabled": True}


def _run(tmp_path, os_name="ubuntu2404", variables=None, facts=None, extra_args=OFFLINE):
    all_vars = dict(ON)
    all_vars.update(variables or {})
    return run_role(
        tmp_path, "cuda_toolkit", variables=all_vars, facts=facts or os_facts(os_name), extra_args=extra_args
    )


def _plan(run):
    return run.result("Preflight | Record the plan")["ansible_facts"]["cuda_toolkit_plan"]


def _changed_tasks(run):
    return [name for name, result in run.tasks() if result.get("changed")]


def _failed_task(run):
    return next(name for name, result in run.tasks() if result.get("failed"))


def test_disabled_says_so_and_does_nothing(tmp_path):
    run = _run(tmp_path, variables={"cuda_toolkit_enabled": False}, extra_args=())
    assert run.rc == 0, run.output
    assert "cuda_toolkit_enabled is false" in run.result("Preflight | Say that the role is off")["msg"]
    assert _changed_tasks(run) == []
    assert not [name for name, result in run.tasks() if "Install |" in name and not result.get("skipped")]


@pytest.mark.parametrize(
    ("os_name", "repository", "family"),
    [
        ("ubuntu2204", "ubuntu2204/x86_64", "apt"),
        ("ubuntu2404", "ubuntu2404/x86_64", "apt"),
        ("debian12", "debian12/x86_64", "apt"),
        ("debian13", "debian13/x86_64", "apt"),
        ("rocky8", "rhel8/x86_64", "dnf"),
        ("rocky9", "rhel9/x86_64", "dnf"),
        ("alma9", "rhel9/x86_64", "dnf"),
        ("rhel9", "rhel9/x86_64", "dnf"),
    ],
)
def test_repository_plan(tmp_path, os_name, repository, family):
    run = _run(tmp_path, os_name)
    assert run.rc == 0, run.output
    assert _plan(run) == {
        "os": os_name.replace("rocky", "el").replace("alma", "el").replace("rhel", "el"),
        "source": "cuda_repo",
        "repository": repository,
        "version": "12.8",
        "package": "cuda-toolkit-12-8",
        "packages": ["cuda-toolkit-12-8"],
        "hold": ["cuda-toolkit-12-8"],
        "home": "/usr/local/cuda-12.8",
        "nvcc": "/usr/local/cuda-12.8/bin/nvcc",
        "min_driver": "570.26",
        "driver_pins": [],
    }
    # cuda_repo's preflight ran inside the toolkit's, so its checks come before any change too.
    assert any(name.endswith("cuda_repo : Preflight | Check the distribution release") for name, _result in run.tasks())
    assert run.changed_paths() == [PROFILE]


# The version may be left empty or given as the one the release ships.
@pytest.mark.parametrize(
    ("os_name", "version", "given"),
    [
        ("debian12", "11.8", ""),
        ("debian13", "12.4", "12.4"),
        ("ubuntu2204", "11.5", "11.5"),
        ("ubuntu2404", "12.0", ""),
    ],
)
def test_distro_plan(tmp_path, os_name, version, given):
    run = _run(tmp_path, os_name, {"cuda_toolkit_source": "distro", "cuda_toolkit_version": given})
    assert run.rc == 0, run.output
    plan = _plan(run)
    assert (plan["version"], plan["packages"], plan["hold"], plan["nvcc"], plan["repository"]) == (
        version,
        ["nvidia-cuda-toolkit"],
        ["nvidia-cuda-toolkit"],
        "/usr/bin/nvcc",
        "",
    )
    assert not any(" cuda_repo : " in name for name, _result in run.tasks())


@pytest.mark.parametrize(
    ("os_name", "package_version", "expected"),
    [
        ("ubuntu2404", "12.8.1", "cuda-toolkit-12-8=12.8.1-*"),
        ("debian12", "12.8.1-1", "cuda-toolkit-12-8=12.8.1-1"),
        ("rocky9", "12.8.1-1", "cuda-toolkit-12-8-12.8.1-1"),
        ("rocky9", "12.8.1", "cuda-toolkit-12-8-12.8.1"),
    ],
)
def test_exact_package_version(tmp_path, os_name, package_version, expected):
    run = _run(tmp_path, os_name, {"cuda_toolkit_package_version": package_version, "cuda_toolkit_hold": False})
    assert run.rc == 0, run.output
    plan = _plan(run)
    assert plan["packages"] == [expected]
    assert plan["hold"] == []
    # The update has its own row in the driver table.
    assert plan["min_driver"] == "570.124.06"


def test_aarch64_and_version_13(tmp_path):
    run = _run(
        tmp_path,
        "ubuntu2404",
        {"cuda_toolkit_version": "13.0", "nvidia_driver_branch": 580},
        facts=os_facts("ubuntu2404", architecture="aarch64"),
    )
    assert run.rc == 0, run.output
    plan = _plan(run)
    assert (plan["repository"], plan["package"], plan["min_driver"], plan["driver_pins"]) == (
        "ubuntu2404/sbsa",
        "cuda-toolkit-13-0",
        "580.65.06",
        ["nvidia_driver_branch=580"],
    )


# --- /etc/profile.d/cuda.sh ----------------------------------------------------------------------------------


def _source_twice(tmp_path, text):
    script = tmp_path / "cuda.sh"
    script.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [
            "/bin/sh",
            "-u",
            "-c",
            f'. {script}; . {script}; printf "%s\\n" "$PATH" "${{LD_LIBRARY_PATH-unset}}" "$CUDA_HOME"',
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_profile_for_the_repository_toolkit(tmp_path):
    run = _run(tmp_path, "ubuntu2404", {"cuda_toolkit_version": "12.9", "nvidia_driver_branch": 575})
    assert run.rc == 0, run.output
    text = run.rendered(PROFILE)
    assert 'PATH="/usr/local/cuda-12.9/bin${PATH:+:${PATH}}"' in text
    assert 'LD_LIBRARY_PATH="/usr/local/cuda-12.9/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"' in text
    # Sourced twice by a POSIX sh with -u: each directory once, in front, and no unbound-variable error.
    assert _source_twice(tmp_path, text) == [
        "/usr/local/cuda-12.9/bin:/usr/bin:/bin",
        "/usr/local/cuda-12.9/lib64",
        "/usr/local/cuda-12.9",
    ]
    mode = run.result("Configure | Write /etc/profile.d/cuda.sh")["invocation"]["module_args"]["mode"]
    assert mode == "0644"


def test_profile_for_the_distro_toolkit_sets_only_cuda_home(tmp_path):
    run = _run(tmp_path, "debian13", {"cuda_toolkit_source": "distro", "cuda_toolkit_version": ""})
    assert run.rc == 0, run.output
    text = run.rendered(PROFILE)
    assert "CUDA 12.4 from Debian's nvidia-cuda-toolkit package" in text
    assert "PATH=" not in text.replace("# ", "")
    assert _source_twice(tmp_path, text) == ["/usr/bin:/bin", "unset", "/usr"]


def test_profile_can_be_turned_off(tmp_path):
    run = _run(tmp_path, "ubuntu2404", {"cuda_toolkit_profile": False})
    assert run.rc == 0, run.output
    assert run.result("Configure | Write /etc/profile.d/cuda.sh").get("skipped")
    args = run.result("Configure | Remove /etc/profile.d/cuda.sh")["invocation"]["module_args"]
    assert (args["path"], args["state"]) == (PROFILE, "absent")


# --- driver pins ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "pins"),
    [
        ({"nvidia_driver_branch": 570}, ["nvidia_driver_branch=570"]),
        ({"nvidia_driver_branch": "580"}, ["nvidia_driver_branch=580"]),
        ({"nvidia_driver_version": "570.26"}, ["nvidia_driver_version=570.26"]),
        (
            {"nvidia_driver_version": "570.195.03", "nvidia_driver_branch": 570},
            ["nvidia_driver_version=570.195.03", "nvidia_driver_branch=570"],
        ),
        # The nvidia_driver role's own defaults (no pin) when it runs in the same play.
        ({"nvidia_driver_version": "", "nvidia_driver_branch": None}, []),
        (
            {"nvidia_driver_plan": {"skip": False, "branch": 580}},
            ["nvidia_driver_plan.branch (the branch the nvidia_driver role chose)=580"],
        ),
        # A host without GPUs, which nvidia_driver skips, has no driver to hold the toolkit to.
        ({"nvidia_driver_plan": {"skip": True, "branch": 535}}, []),
        ({"nvidia_driver_branch": 535, "cuda_toolkit_driver_check": "minor_version"}, ["nvidia_driver_branch=535"]),
        ({"nvidia_driver_branch": 470, "cuda_toolkit_driver_check": "none"}, ["nvidia_driver_branch=470"]),
    ],
    ids=["branch", "branch-str", "exact-ga", "exact-and-branch", "role-defaults", "plan", "plan-skip", "minor", "none"],
)
def test_driver_pins_that_fit(tmp_path, variables, pins):
    run = _run(tmp_path, "ubuntu2204", variables)
    assert run.rc == 0, run.output
    assert _plan(run)["driver_pins"] == pins


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"nvidia_driver_branch": 535},
            "CUDA 12.8 (cuda_toolkit_version 12.8) needs NVIDIA driver 570.26 or newer (CUDA release notes, CUDA "
            "Toolkit and Corresponding Driver Versions), but nvidia_driver_branch pins 535. Fix: raise the driver to "
            "570.26 or newer (branch 570 or newer), or choose an older cuda_toolkit_version, or set "
            "cuda_toolkit_driver_check: minor_version",
        ),
        (
            {"nvidia_driver_version": "570.86.10", "cuda_toolkit_package_version": "12.8.1-1"},
            "CUDA 12.8.1 (cuda_toolkit_version 12.8, cuda_toolkit_package_version 12.8.1-1) needs NVIDIA driver "
            "570.124.06 or newer",
        ),
        (
            {"nvidia_driver_plan": {"skip": False, "branch": 535}},
            "but nvidia_driver_plan.branch (the branch the nvidia_driver role chose) pins 535",
        ),
        (
            {"nvidia_driver_version": "565.57.01", "nvidia_driver_branch": 565, "cuda_toolkit_version": "13.0"},
            "needs NVIDIA driver 580.65.06 or newer (CUDA release notes, CUDA Toolkit and Corresponding Driver "
            "Versions), but nvidia_driver_version pins 565.57.01 and nvidia_driver_branch pins 565",
        ),
        (
            {"nvidia_driver_branch": 575, "cuda_toolkit_version": "13.0", "cuda_toolkit_driver_check": "minor_version"},
            "needs NVIDIA driver 580 or newer (CUDA minor version compatibility), but nvidia_driver_branch pins 575",
        ),
        (
            {"nvidia_driver_branch": 580, "cuda_toolkit_version": "13.9"},
            "The role does not know the minimum driver of CUDA 13.9 (its table ends at 13.2). Fix: set "
            "cuda_toolkit_min_driver",
        ),
        (
            {"nvidia_driver_branch": 590, "cuda_toolkit_version": "13.9", "cuda_toolkit_min_driver": "600.10.02"},
            "needs NVIDIA driver 600.10.02 or newer",
        ),
        ({"cuda_toolkit_min_driver": "r570"}, "cuda_toolkit_min_driver 'r570' is not a driver version"),
    ],
    ids=["branch", "exact-update", "plan", "two-pins-13", "minor-13", "unknown-version", "own-minimum", "bad-minimum"],
)
def test_toolkit_newer_than_the_driver_fails_before_any_change(tmp_path, variables, expected):
    run = _run(tmp_path, "ubuntu2204", variables, extra_args=())
    assert run.rc != 0, run.output
    assert expected in " ".join(run.failure().split())
    assert " : Preflight | " in _failed_task(run)
    assert run.changed_paths() == []
    assert _changed_tasks(run) == []


def test_distro_toolkit_newer_than_the_driver(tmp_path):
    run = _run(
        tmp_path, "debian12", {"cuda_toolkit_source": "distro", "cuda_toolkit_version": "", "nvidia_driver_branch": 470}
    )
    assert run.rc != 0, run.output
    assert (
        "CUDA 11.8 (Debian's nvidia-cuda-toolkit) needs NVIDIA driver 520.61.05 or newer (CUDA release notes, CUDA "
        "Toolkit and Corresponding Driver Versions), but nvidia_driver_branch pins 470."
    ) in " ".join(run.failure().split())
    assert _changed_tasks(run) == []


# --- other bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_name", "facts", "variables", "expected"),
    [
        (
            "rocky9",
            {},
            {"cuda_toolkit_source": "distro"},
            "cuda_toolkit_source=distro: Rocky 9.5 ships no CUDA toolkit (RHEL, Rocky and AlmaLinux have no "
            "nvidia-cuda-toolkit package). Fix: use cuda_toolkit_source: cuda_repo.",
        ),
        ("alma9", {}, {"cuda_toolkit_source": "distro", "cuda_toolkit_version": ""}, "AlmaLinux 9.5 ships no CUDA"),
        ("ubuntu2404", {}, {"cuda_toolkit_version": "12"}, "cuda_toolkit_version '12' is not a CUDA release like 12.8"),
        ("ubuntu2404", {}, {"cuda_toolkit_version": "12.8.1"}, "cuda_toolkit_version '12.8.1' is not a CUDA release"),
        ("ubuntu2404", {}, {"cuda_toolkit_version": "twelve"}, "cuda_toolkit_version 'twelve' is not a CUDA release"),
        ("ubuntu2404", {}, {"cuda_toolkit_version": ""}, "cuda_toolkit_version '' is not a CUDA release"),
        (
            "ubuntu2404",
            {},
            {"cuda_toolkit_package_version": "12.9.1"},
            "cuda_toolkit_package_version '12.9.1' must be an exact version inside cuda_toolkit_version 12.8, like "
            "12.8.1 or 12.8.1-1.",
        ),
        ("ubuntu2404", {}, {"cuda_toolkit_package_version": "12.8"}, "must be an exact version inside"),
        (
            "ubuntu2404",
            {},
            {"cuda_toolkit_source": "distro", "cuda_toolkit_version": "12.8"},
            "cuda_toolkit_version 12.8 with cuda_toolkit_source=distro: Ubuntu 24.04 ships CUDA 12.0 "
            "(nvidia-cuda-toolkit). Fix: set cuda_toolkit_version to '12.0' or '', or use cuda_toolkit_source: "
            "cuda_repo for 12.8.",
        ),
        (
            "debian12",
            {},
            {"cuda_toolkit_source": "distro", "cuda_toolkit_version": "11.8", "cuda_toolkit_package_version": "11.8.0"},
            "cuda_toolkit_package_version is only for cuda_toolkit_source=cuda_repo",
        ),
        (
            "ubuntu2004",
            {},
            {},
            "cuda_toolkit supports Debian 12/13, Ubuntu 22.04/24.04 and RHEL/Rocky/AlmaLinux 8/9; this host is Ubuntu "
            "20.04 (ubuntu2004). Fix: set cuda_repo_distro",
        ),
        ("ubuntu2404", {}, {"cuda_toolkit_source": "runfile"}, "cuda_toolkit_source"),
        # NVIDIA's repository is checked by cuda_repo's own preflight, run from the toolkit's.
        ("ubuntu2404", {"architecture": "ppc64le"}, {}, "no directory for architecture ppc64le"),
        (
            "ubuntu2404",
            {},
            {"cuda_repo_key_url": "https://keys.example.internal/k.pub"},
            "cuda_repo_key_fingerprint is empty",
        ),
    ],
    ids=[
        "distro-on-rocky",
        "distro-on-alma",
        "version-major-only",
        "version-three-parts",
        "version-words",
        "version-empty-for-repo",
        "package-version-outside",
        "package-version-short",
        "distro-version-mismatch",
        "package-version-with-distro",
        "ubuntu2004",
        "unknown-source",
        "repo-arch",
        "repo-key",
    ],
)
def test_bad_input_fails_before_any_change(tmp_path, os_name, facts, variables, expected):
    run = _run(tmp_path, os_name, variables, facts=os_facts(os_name, **facts), extra_args=())
    assert run.rc != 0, run.output
    assert expected in " ".join(run.failure().split())
    failed = _failed_task(run)
    assert " : Preflight | " in failed or "Validating arguments against arg spec" in failed
    assert run.changed_paths() == []
    assert _changed_tasks(run) == []


def test_unsupported_release_with_a_repository_override(tmp_path):
    run = _run(tmp_path, "ubuntu2004", {"cuda_repo_distro": "ubuntu2004"})
    assert run.rc == 0, run.output
    assert _plan(run)["repository"] == "ubuntu2004/x86_64"


# --- verify: nvcc --version ----------------------------------------------------------------------------------

NVCC_12_8 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Fri_Feb_21_20:23:50_PST_2025
Cuda compilation tools, release 12.8, V12.8.93
Build cuda_12.8.r12.8/compiler.35583870_0
"""


def _fake_nvcc(tmp_path, output, rc=0):
    nvcc = tmp_path / "nvcc"
    nvcc.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\nexit {rc}\n")
    nvcc.chmod(0o755)
    return str(nvcc)


def _verify(tmp_path, nvcc, variables=None):
    all_vars = {"__cuda_toolkit_nvcc": nvcc}  # test seam: the role's nvcc path
    all_vars.update(variables or {})
    return _run(
        tmp_path, "ubuntu2404", all_vars, extra_args=("--skip-tags", "cuda_toolkit_install,cuda_toolkit_configure")
    )


def test_verify_reads_the_release_from_nvcc(tmp_path):
    run = _verify(tmp_path, _fake_nvcc(tmp_path, NVCC_12_8))
    assert run.rc == 0, run.output
    facts = run.result("Verify | Record the installed version")["ansible_facts"]
    assert facts == {"cuda_toolkit_installed_version": "12.8", "cuda_toolkit_nvcc_version": "12.8.93"}


def test_verify_fails_on_another_release(tmp_path):
    run = _verify(tmp_path, _fake_nvcc(tmp_path, NVCC_12_8.replace("12.8", "12.6")))
    assert run.rc != 0
    assert "reports CUDA release '12.6', expected 12.8" in " ".join(run.failure().split())


def test_verify_fails_on_output_without_a_release(tmp_path):
    run = _verify(tmp_path, _fake_nvcc(tmp_path, "Segmentation fault\n"))
    assert run.rc != 0
    assert "reports CUDA release '', expected 12.8" in " ".join(run.failure().split())


def test_verify_fails_without_nvcc(tmp_path):
    run = _verify(tmp_path, str(tmp_path / "missing" / "nvcc"))
    assert run.rc != 0
    message = " ".join(run.failure().split())
    assert f"{tmp_path}/missing/nvcc --version failed" in message
    assert "Is cuda-toolkit-12-8 installed?" in message
