"""Unit tests for plugins/module_utils/proc_cgroup.py."""

from __future__ import annotations

import os

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils.proc_cgroup import (
    classify_cgroup_path,
    normalize_unit,
    owner_from_cgroup,
    parse_cgroup_file,
    read_comm,
    read_pid_owner,
    short_id,
    unit_label,
)

DOCKER_ID = "b7595ee7402dc0f646332fadc3def1ff6283679a8c1deaac542dc4e1f10294cd"
OTHER_ID = "a082d0b68261328b2f3b9445cfd01e1ed935b0e966bf04f2b5f81da4a9c1376e"


def owner(text):
    result = owner_from_cgroup(text)
    return result["type"], result["unit"] or result["container_id"]


# --- units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, unit",
    [
        ("0::/system.slice/system-vllm.slice/vllm@chat.service\n", "vllm@chat.service"),
        ("0::/system.slice/vllm@chat.service\n", "vllm@chat.service"),
        ("0::/system.slice/sshd.service\n", "sshd.service"),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"),
        ("0::/init.scope\n", "init.scope"),
        # Delegated sub-cgroups below a service still belong to it.
        ("0::/system.slice/vllm@chat.service/payload\n", "vllm@chat.service"),
        # The Docker daemon itself, not a container.
        ("0::/system.slice/docker.service\n", "docker.service"),
        # Podman's monitor process is no container.
        (f"0::/machine.slice/libpod-conmon-{DOCKER_ID}.scope\n", f"libpod-conmon-{DOCKER_ID}.scope"),
    ],
)
def test_units_v2(text, unit):
    assert owner(text) == ("unit", unit)


def test_user_units_below_the_user_manager():
    result = owner_from_cgroup("0::/user.slice/user-1000.slice/user@1000.service/app.slice/vllm-dev.service\n")
    assert (result["type"], result["unit"], result["user_unit"]) == ("unit", "vllm-dev.service", True)
    # The manager's own processes.
    result = owner_from_cgroup("0::/user.slice/user-1000.slice/user@1000.service/init.scope\n")
    assert (result["unit"], result["user_unit"]) == ("init.scope", True)
    result = owner_from_cgroup("0::/user.slice/user-1000.slice/user@1000.service\n")
    assert (result["unit"], result["user_unit"]) == ("user@1000.service", False)


def test_cgroup_v1_legacy_uses_name_systemd():
    text = (
        "12:cpuset:/\n"
        "10:memory:/system.slice/system-vllm.slice/vllm@llama70b.service\n"
        "6:cpu,cpuacct:/system.slice/system-vllm.slice/vllm@llama70b.service\n"
        "1:name=systemd:/system.slice/system-vllm.slice/vllm@llama70b.service\n"
    )
    result = owner_from_cgroup(text)
    assert (result["type"], result["unit"]) == ("unit", "vllm@llama70b.service")
    assert result["cgroup"] == "/system.slice/system-vllm.slice/vllm@llama70b.service"


def test_cgroup_v1_without_name_systemd_falls_back_to_controllers():
    assert owner("4:memory:/system.slice/vllm@a.service\n3:cpuset:/\n") == ("unit", "vllm@a.service")


def test_hybrid_prefers_the_unified_line():
    text = "1:name=systemd:/system.slice/old.service\n0::/system.slice/system-vllm.slice/vllm@chat.service\n"
    assert owner(text) == ("unit", "vllm@chat.service")


def test_hybrid_with_empty_unified_line_uses_name_systemd():
    text = "2:cpu:/\n1:name=systemd:/system.slice/vllm@chat.service\n0::/\n"
    assert owner(text) == ("unit", "vllm@chat.service")


# --- containers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, runtime",
    [
        (f"/system.slice/docker-{DOCKER_ID}.scope", "docker"),
        (f"/docker/{DOCKER_ID}", "docker"),
        (f"/machine.slice/libpod-{DOCKER_ID}.scope", "podman"),
        (f"/machine.slice/libpod-{DOCKER_ID}.scope/container", "podman"),
        (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{DOCKER_ID}.scope", "podman"),
        (f"/libpod_parent/libpod-{DOCKER_ID}", "podman"),
        (f"/system.slice/nerdctl-{DOCKER_ID}.scope", "containerd"),
        (f"/default/{DOCKER_ID}", "container"),
        # Docker with systemd inside the container: the container still wins.
        (f"/system.slice/docker-{DOCKER_ID}.scope/system.slice/vllm@chat.service", "docker"),
    ],
)
def test_containers(path, runtime):
    result = owner_from_cgroup(f"0::{path}\n")
    assert (result["type"], result["runtime"], result["container_id"]) == ("container", runtime, DOCKER_ID)
    assert result["unit"] is None
    assert result["pod_uid"] is None
    assert result["cgroup"] == path


@pytest.mark.parametrize(
    "path, runtime",
    [
        (
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c9a52_0c7d_4b1e_9d8e_1a2b3c4d5e6f.slice/"
            f"cri-containerd-{OTHER_ID}.scope",
            "containerd",
        ),
        (
            f"/kubepods.slice/kubepods-pod6f1c9a52_0c7d_4b1e_9d8e_1a2b3c4d5e6f.slice/crio-{OTHER_ID}.scope",
            "cri-o",
        ),
        (f"/kubepods/besteffort/pod6f1c9a52-0c7d-4b1e-9d8e-1a2b3c4d5e6f/{OTHER_ID}", "container"),
    ],
)
def test_kubernetes(path, runtime):
    result = owner_from_cgroup(f"0::{path}\n")
    assert (result["type"], result["runtime"], result["container_id"]) == ("container", runtime, OTHER_ID)
    assert result["pod_uid"] == "6f1c9a52-0c7d-4b1e-9d8e-1a2b3c4d5e6f"


def test_container_in_v1_controllers_wins_over_the_unified_line():
    # Hybrid host, Docker with the cgroupfs driver: only the v1 controllers know the container.
    text = (
        f"4:memory:/docker/{DOCKER_ID}\n"
        "1:name=systemd:/system.slice/containerd.service\n"
        "0::/system.slice/containerd.service\n"
    )
    assert owner(text) == ("container", DOCKER_ID)


def test_cgroup_v1_docker_systemd_driver():
    text = f"9:devices:/system.slice/docker-{DOCKER_ID}.scope\n1:name=systemd:/system.slice/docker-{DOCKER_ID}.scope\n"
    assert owner(text) == ("container", DOCKER_ID)


# --- no owner -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0::/\n", "0::/system.slice\n", "0::/user.slice/user-1000.slice\n"])
def test_no_unit(text):
    result = owner_from_cgroup(text)
    assert result["type"] == "none"
    assert "belongs to no systemd unit or container" in result["reason"]


@pytest.mark.parametrize("text", ["", "garbage\n", "0::relative\n"])
def test_no_cgroup_information(text):
    result = owner_from_cgroup(text)
    assert result["type"] == "none"
    assert result["reason"] == "no cgroup information"


def test_parse_cgroup_file():
    text = "12:cpu,cpuacct:/a\n1:name=systemd:/b:c\n0::/x (deleted)\nbad\n"
    assert parse_cgroup_file(text) == [
        ("12", ("cpu", "cpuacct"), "/a"),
        ("1", ("name=systemd",), "/b:c"),
        ("0", (), "/x"),
    ]


def test_classify_path_directly():
    assert classify_cgroup_path("/system.slice/system-vllm.slice/vllm@x.service")["unit"] == "vllm@x.service"


# --- reading /proc -------------------------------------------------------------------------------


def test_read_pid_owner_from_a_fake_proc(tmp_path):
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text("0::/user.slice/user-1000.slice/session-3.scope\n")
    (tmp_path / "4242" / "comm").write_text("python3\n")
    result = read_pid_owner(4242, str(tmp_path))
    assert (result["type"], result["unit"]) == ("unit", "session-3.scope")
    assert read_comm(4242, str(tmp_path)) == "python3"


def test_read_pid_owner_missing_process(tmp_path):
    result = read_pid_owner(999, str(tmp_path))
    assert result["type"] == "none"
    assert "does not exist" in result["reason"]
    assert "another PID namespace" in result["reason"]
    assert read_comm(999, str(tmp_path)) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_read_pid_owner_unreadable(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text("0::/x.service\n")
    (tmp_path / "7" / "cgroup").chmod(0)
    result = read_pid_owner(7, str(tmp_path))
    assert result["type"] == "none"
    assert result["reason"].startswith("cannot read")


def test_read_own_process():
    # The real /proc: this test process belongs to something (a unit, a container, or the root).
    result = read_pid_owner(os.getpid())
    assert result["type"] in ("unit", "container", "none")
    assert result["reason"] != "no cgroup information"


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, unit",
    [
        ("vllm@chat", "vllm@chat.service"),
        ("vllm@chat.service", "vllm@chat.service"),
        ("session-3.scope", "session-3.scope"),
        (" docker ", "docker.service"),
        ("vllm@chat.v2", "vllm@chat.v2.service"),
    ],
)
def test_normalize_unit(given, unit):
    assert normalize_unit(given) == unit


def test_labels():
    assert unit_label("vllm@chat.service") == "vllm@chat"
    assert unit_label("session-3.scope") == "session-3.scope"
    assert unit_label(None) is None
    assert short_id(DOCKER_ID) == "b7595ee7402d"
    assert short_id(None) is None
