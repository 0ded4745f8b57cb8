"""The container_toolkit role: repository files, the udev rule, CDI decisions, and bad input refused in preflight.

Each case runs the real role on localhost in check mode as another OS (injected facts). Package managers cannot
work for a foreign OS here, so tags select what runs: preflight always runs; `container_toolkit_repos` renders the
repository files, `container_toolkit_udev` the udev rule, `container_toolkit_cdi` the CDI decisions. `untagged` lets
the test play's own (untagged) tasks run. A fake nvidia-smi (recorded 4x L40S, driver 570.172.08) stands in for a
GPU host, and a fake dockerd for an installed Docker where a case needs one.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from ..plugins.modules.test_gpu_info import write_fake
from .rolerun import os_facts, run_role

PREFLIGHT = ["untagged", "container_toolkit_preflight"]
REPOS = ["untagged", "container_toolkit_repos"]
UDEV = ["untagged", "container_toolkit_udev"]
CDI = ["untagged", "container_toolkit_cdi"]
DEB = ["debian12", "debian13", "ubuntu2204", "ubuntu2404"]
EL = ["rocky8", "rocky9"]
DOCKER_SOURCES = "/etc/apt/sources.list.d/docker.sources"
NVIDIA_SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
DOCKER_REPO = "/etc/yum.repos.d/docker-ce.repo"
NVIDIA_REPO = "/etc/yum.repos.d/nvidia-container-toolkit.repo"
UDEV_RULE = "/lib/udev/rules.d/71-nvidia-dev-char.rules"
CODENAMES = {"debian12": "bookworm", "debian13": "trixie", "ubuntu2204": "jammy", "ubuntu2404": "noble"}
L40S_DRIVER = "570.172.08"


def _run(tmp_path, os_name="debian12", variables=None, *, tags=None, gpus=None, facts=None):
    """Run the role (preflight only unless tags say more); daemon.json and the CDI spec live in tmp_path."""
    all_vars = {
        "container_toolkit_docker_daemon_config": str(tmp_path / "daemon.json"),
        "container_toolkit_cdi_spec_path": str(tmp_path / "cdi" / "nvidia.yaml"),
    }
    all_vars.update(variables or {})
    module_defaults = None
    if gpus:
        bindir = tmp_path / "smi"
        bindir.mkdir(exist_ok=True)
        fake = write_fake(bindir, gpus)[0]
        module_defaults = {"gpubox.llm.gpu_info": {"nvidia_smi_path": fake}}
    return run_role(
        tmp_path,
        "container_toolkit",
        variables=all_vars,
        facts=os_facts(os_name, **(facts or {})),
        tags=tags or PREFLIGHT,
        module_defaults=module_defaults,
    )


@pytest.fixture(name="dockerd")
def fixture_dockerd(tmp_path, monkeypatch):
    """Put a fake dockerd reporting ``version`` first in PATH (this machine may have a Docker of its own, or none)."""

    def install(version):
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        fake = bindir / "dockerd"
        fake.write_text(f"#!/bin/sh\necho 'Docker version {version}, build 0000000'\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    return install


def _fields(text):
    """deb822 stanza -> {field: value}, comments dropped."""
    fields = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def _ini(text):
    """yum .repo text -> {section: {key: value}}."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"\[(.+)\]", line)
        if match:
            current = sections.setdefault(match.group(1), {})
        else:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
    return sections


def _changed(run):
    return [name for name, result in run.tasks() if result.get("changed")]


def _msg(run):
    return " ".join((run.failure() or "").split())


# Repository files


@pytest.mark.parametrize("os_name", DEB)
def test_apt_repositories(tmp_path, os_name):
    run = _run(tmp_path, os_name, tags=REPOS)
    assert run.rc == 0, run.failure() or run.output
    distro = "ubuntu" if os_name.startswith("ubuntu") else "debian"

    docker = _fields(run.rendered(DOCKER_SOURCES))
    assert docker == {
        "Types": "deb",
        "URIs": f"https://download.docker.com/linux/{distro}",
        "Suites": CODENAMES[os_name],
        "Components": "stable",
        "Architectures": "amd64",
        "Signed-By": "/etc/apt/keyrings/docker.asc",
    }

    # NVIDIA's list is the flat "deb .../stable/deb/$(ARCH) /": Suites "/" and no Components.
    nvidia = _fields(run.rendered(NVIDIA_SOURCES))
    assert nvidia == {
        "Types": "deb",
        "URIs": "https://nvidia.github.io/libnvidia-container/stable/deb/amd64",
        "Suites": "/",
        "Architectures": "amd64",
        "Signed-By": "/etc/apt/keyrings/nvidia-container-toolkit.asc",
    }
    assert sorted(run.changed_paths()) == [DOCKER_SOURCES, NVIDIA_SOURCES]
    assert not any(path.startswith("/etc/yum.repos.d") for path in run.changed_paths())


@pytest.mark.parametrize("os_name", EL)
def test_dnf_repositories(tmp_path, os_name):
    run = _run(tmp_path, os_name, tags=REPOS)
    assert run.rc == 0, run.failure() or run.output
    major = os_name[-1]

    docker = _ini(run.rendered(DOCKER_REPO))
    assert docker == {
        "docker-ce-stable": {
            "name": "Docker CE Stable - $basearch",
            "baseurl": f"https://download.docker.com/linux/rhel/{major}/$basearch/stable",
            "enabled": "1",
            "gpgcheck": "1",
            "gpgkey": "https://download.docker.com/linux/rhel/gpg",
        }
    }

    nvidia = _ini(run.rendered(NVIDIA_REPO))
    assert list(nvidia) == ["nvidia-container-toolkit", "nvidia-container-toolkit-experimental"]
    stable = nvidia["nvidia-container-toolkit"]
    assert stable["baseurl"] == "https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch"
    assert stable["gpgkey"] == "https://nvidia.github.io/libnvidia-container/gpgkey"
    assert (stable["enabled"], stable["repo_gpgcheck"], stable["gpgcheck"], stable["sslverify"]) == ("1", "1", "0", "1")
    experimental = nvidia["nvidia-container-toolkit-experimental"]
    assert experimental["enabled"] == "0"
    assert experimental["baseurl"] == "https://nvidia.github.io/libnvidia-container/experimental/rpm/$basearch"
    assert sorted(run.changed_paths()) == [DOCKER_REPO, NVIDIA_REPO]


def test_other_el_distributions_use_the_rhel_repository(tmp_path):
    for os_name in ("alma9", "rhel9"):
        run = _run(tmp_path, os_name, tags=REPOS)
        assert run.rc == 0, run.failure() or run.output
        assert "baseurl=https://download.docker.com/linux/rhel/9/$basearch/stable" in run.rendered(DOCKER_REPO)


@pytest.mark.parametrize("os_name", ["debian13", "ubuntu2404"])
def test_distro_docker_needs_no_docker_repository(tmp_path, os_name):
    run = _run(tmp_path, os_name, {"container_toolkit_docker_source": "distro"}, tags=REPOS)
    assert run.rc == 0, run.failure() or run.output
    assert run.changed_paths() == [NVIDIA_SOURCES]


def test_mirrors_and_arm64(tmp_path):
    variables = {
        "container_toolkit_docker_repo_url": "https://mirror.example.internal/docker-ce/linux/",
        "container_toolkit_nvidia_repo_url": "https://mirror.example.internal/libnvidia-container",
    }
    run = _run(tmp_path, "ubuntu2404", variables, tags=REPOS, facts={"architecture": "aarch64"})
    assert run.rc == 0, run.failure() or run.output
    docker = _fields(run.rendered(DOCKER_SOURCES))
    assert docker["URIs"] == "https://mirror.example.internal/docker-ce/linux/ubuntu"
    assert docker["Architectures"] == "arm64"
    nvidia = _fields(run.rendered(NVIDIA_SOURCES))
    assert nvidia["URIs"] == "https://mirror.example.internal/libnvidia-container/stable/deb/arm64"
    assert nvidia["Architectures"] == "arm64"

    run = _run(tmp_path, "rocky9", variables, tags=REPOS)
    assert "baseurl=https://mirror.example.internal/docker-ce/linux/rhel/9/$basearch/stable" in run.rendered(
        DOCKER_REPO
    )
    assert "gpgkey=https://mirror.example.internal/libnvidia-container/gpgkey" in run.rendered(NVIDIA_REPO)


# The daemon-reload guard


def test_dev_char_udev_rule(tmp_path):
    run = _run(tmp_path, "debian12", tags=UDEV)
    assert run.rc == 0, run.failure() or run.output
    rules = [line for line in run.rendered(UDEV_RULE).splitlines() if line and not line.startswith("#")]
    # NVIDIA's rule (nvidia-container-toolkit issue 48), byte for byte.
    assert rules == [
        'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", '
        'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"'
    ]
    assert run.changed_paths() == [UDEV_RULE]
    assert run.result("Reload udev rules")["msg"] == "Command would have run if not in check mode"


@pytest.mark.parametrize("guard", ["none", "cdi"])
def test_other_guards_remove_the_udev_rule(tmp_path, dockerd, guard):
    dockerd("28.5.2")
    run = _run(tmp_path, "ubuntu2404", {"container_toolkit_detach_guard": guard}, tags=UDEV)
    assert run.rc == 0, run.failure() or run.output
    assert run.result("Install the udev rule that creates the /dev/char links when the driver loads")["skipped"]
    removal = run.result("Remove the udev rule of the dev_char guard")
    assert removal["invocation"]["module_args"]["path"] == UDEV_RULE
    assert removal["invocation"]["module_args"]["state"] == "absent"


# CDI specification


def test_no_driver_skips_cdi_with_a_message(tmp_path):
    run = _run(tmp_path, "debian12", tags=CDI)
    assert run.rc == 0, run.failure() or run.output
    message = " ".join(run.result("Say why the CDI specification is not generated")["msg"].split())
    assert "No NVIDIA driver" in message and "gpubox.llm.nvidia_driver" in message
    assert run.result("Look for the CDI specification")["skipped"]


@pytest.mark.parametrize(
    ("spec_driver", "regenerate"),
    [(None, True), ("550.144.03", True), (L40S_DRIVER, False)],
    ids=["no-spec", "older-driver", "same-driver"],
)
def test_cdi_spec_follows_the_driver(tmp_path, spec_driver, regenerate):
    spec = tmp_path / "cdi" / "nvidia.yaml"
    if spec_driver:
        spec.parent.mkdir()
        spec.write_text(f"mounts:\n- hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{spec_driver}\n")
    run = _run(tmp_path, "ubuntu2404", tags=CDI, gpus="l40s_4x")
    assert run.rc == 0, run.failure() or run.output
    facts = run.result("Record which driver the CDI specification was generated for")["ansible_facts"]
    assert facts["__container_toolkit_cdi_spec_driver"] == spec_driver
    result = None
    for name, res in run.tasks():
        if "Generate the CDI specification" in name:
            result = res
    assert result is not None
    if regenerate:
        # Check mode: the command would run.
        assert result.get("msg") == "Command would have run if not in check mode", result
        assert result["invocation"]["module_args"]["argv"] == [
            "/usr/bin/nvidia-ctk",
            "cdi",
            "generate",
            f"--output={spec}",
        ]
    else:
        assert result.get("skip_reason") == "Conditional result was False", result


# Bad input: each fails in preflight with a message naming the fix, and nothing changes.


@pytest.mark.parametrize(
    ("os_name", "variables", "expected"),
    [
        ("debian12", {"container_toolkit_docker_source": "snap"}, "container_toolkit_docker_source must be one of"),
        ("debian12", {"container_toolkit_detach_guard": "cgroupfs"}, "container_toolkit_detach_guard must be one of"),
        ("rocky9", {"container_toolkit_docker_source": "distro"}, "EL distributions ship Podman, not Docker"),
        ("rocky8", {"container_toolkit_docker_source": "distro"}, "Fix: set container_toolkit_docker_source: docker"),
        ("ubuntu2004", {}, "runs Ubuntu 20.04 (ubuntu2004)"),
        (
            "debian12",
            {"container_toolkit_nvidia_version": "latest"},
            "'latest' is not an NVIDIA Container Toolkit version",
        ),
        (
            "ubuntu2404",
            {"container_toolkit_nvidia_version": "1.17"},
            "'1.17' is not an NVIDIA Container Toolkit version",
        ),
        ("rocky9", {"container_toolkit_nvidia_version": "v1.17.8"}, "Fix: give a release such as 1.17.8"),
        (
            "debian12",
            {"container_toolkit_docker_source": "distro", "container_toolkit_detach_guard": "cdi"},
            "ships docker.io 20.10. Fix: set container_toolkit_docker_source: docker",
        ),
        (
            "ubuntu2404",
            {"container_toolkit_detach_guard": "cdi", "container_toolkit_cdi_generate": False},
            "container_toolkit_cdi_generate is false",
        ),
        (
            "ubuntu2204",
            {"container_toolkit_detach_guard": "cdi", "container_toolkit_nvidia_version": "1.14.3"},
            "from NVIDIA Container Toolkit 1.14.5 on",
        ),
    ],
    ids=[
        "unknown-source",
        "unknown-guard",
        "distro-on-el9",
        "distro-on-el8",
        "unsupported-release",
        "pin-not-a-version",
        "pin-too-short",
        "pin-with-v",
        "cdi-with-docker-20",
        "cdi-without-spec",
        "cdi-with-old-toolkit",
    ],
)
def test_bad_input_fails_before_any_change(tmp_path, dockerd, os_name, variables, expected):
    dockerd("28.5.2")
    run = _run(tmp_path, os_name, variables)
    assert run.rc != 0, run.output
    assert expected in _msg(run), run.failure() or run.output
    assert _changed(run) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},}', "it is not valid JSON"),
        ('["log-driver", "journald"]', "it is a JSON array, not an object"),
        ('{"runtimes": "nvidia"}', '"runtimes" is a JSON string'),
    ],
    ids=["trailing-comma", "array", "runtimes-string"],
)
def test_malformed_daemon_json_fails_before_any_change(tmp_path, content, expected):
    (tmp_path / "daemon.json").write_text(content)
    # Under REPOS the repository files would be written next: the failure must come first.
    run = _run(tmp_path, "ubuntu2404", tags=REPOS)
    assert run.rc != 0, run.output
    message = _msg(run)
    assert f"{tmp_path / 'daemon.json'} on localhost cannot be used: {expected}" in message, message
    assert "Fix: correct the file" in message
    assert _changed(run) == []
    assert run.changed_paths() == []


def test_daemon_json_that_is_a_directory(tmp_path):
    (tmp_path / "daemon.json").mkdir()
    run = _run(tmp_path, "debian13")
    assert run.rc != 0, run.output
    assert "cannot be used: it is not a regular file" in _msg(run)


def test_old_installed_docker_refuses_cdi(tmp_path, dockerd):
    dockerd("24.0.7")
    run = _run(tmp_path, "ubuntu2404", {"container_toolkit_detach_guard": "cdi"})
    assert run.rc != 0, run.output
    assert "runs Docker 24.0.7; the role does not upgrade an installed Docker" in _msg(run)
    assert _changed(run) == []


def test_new_installed_docker_allows_cdi(tmp_path, dockerd):
    dockerd("25.0.0")
    run = _run(
        tmp_path, "debian13", {"container_toolkit_detach_guard": "cdi", "container_toolkit_docker_source": "distro"}
    )
    assert run.rc == 0, run.failure() or run.output


def test_good_input_passes_preflight(tmp_path):
    (tmp_path / "daemon.json").write_text(json.dumps({"log-driver": "journald"}))
    for os_name in DEB + EL:
        run = _run(tmp_path, os_name, {"container_toolkit_nvidia_version": "1.17.8-1"})
        assert run.rc == 0, (os_name, run.failure() or run.output)
        facts = run.result("Record what preflight found")["ansible_facts"]
        assert facts["__container_toolkit_daemon_config"] == {"log-driver": "journald"}
        assert _changed(run) == []
