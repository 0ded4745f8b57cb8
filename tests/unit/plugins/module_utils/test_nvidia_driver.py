"""Unit tests for plugins/module_utils/nvidia_driver.py: Secure Boot, loaded module, userspace, drift, containers."""

from __future__ import annotations

import os

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_driver import (
    SECURE_BOOT_VAR,
    container_state,
    drift,
    headers_installed,
    installed_userspace,
    installed_versions,
    kernel_release,
    loaded_module,
    nouveau_loaded,
    parse_efivar_secure_boot,
    parse_mokutil_sb_state,
    parse_proc_driver_version,
    parse_sys_module_version,
    secure_boot_state,
    version_key,
)

from ..modules import fake_sysfs

# --- Secure Boot ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "enabled", "setup_mode"),
    [
        ("SecureBoot enabled\n", True, False),
        ("SecureBoot disabled\n", False, False),
        ("SecureBoot disabled\nPlatform is in Setup Mode\n", False, True),
        ("This system doesn't support Secure Boot\n", False, False),
        ("EFI variables are not supported on this system\n", False, False),
        ("SecureBoot enabled\nSecureBoot validation is disabled in shim\n", True, False),
        ("", None, False),
        ("Failed to read SecureBoot\n", None, False),
    ],
)
def test_parse_mokutil_sb_state(text, enabled, setup_mode):
    state = parse_mokutil_sb_state(text)
    assert state["enabled"] is enabled
    assert state["setup_mode"] is setup_mode
    assert state["detail"]


def test_mokutil_detail_quotes_the_output():
    state = parse_mokutil_sb_state("SecureBoot disabled\nPlatform is in Setup Mode\n")
    assert state["detail"] == "SecureBoot disabled; Platform is in Setup Mode"
    shim = parse_mokutil_sb_state("SecureBoot enabled\nSecureBoot validation is disabled in shim\n")
    assert "unsigned modules load" in shim["detail"]


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x06\x00\x00\x00\x01", True),
        (b"\x06\x00\x00\x00\x00", False),
        (b"\x07\x00\x00\x00\x01", True),
        (fake_sysfs.efivar_bytes(1), True),
        (fake_sysfs.efivar_bytes(0), False),
        (b"\x06\x00\x00\x00", None),
        (b"\x06\x00\x00\x00\x02", None),
        (b"", None),
        (None, None),
    ],
)
def test_parse_efivar_secure_boot(data, value):
    assert parse_efivar_secure_boot(data) is value


def test_secure_boot_legacy_bios(tmp_path):
    state = secure_boot_state(str(tmp_path), mokutil_runner=lambda: pytest.fail("mokutil must not run"))
    assert state["enabled"] is False
    assert state["source"] == "bios"
    assert state["setup_mode"] is False


@pytest.mark.parametrize(("secure_boot", "setup_mode"), [(True, False), (False, False), (False, True)])
def test_secure_boot_from_efivars(tmp_path, secure_boot, setup_mode):
    fake_sysfs.add_efivars(tmp_path, secure_boot=secure_boot, setup_mode=setup_mode)
    state = secure_boot_state(str(tmp_path), mokutil_runner=lambda: pytest.fail("mokutil must not run"))
    assert state["enabled"] is secure_boot
    assert state["setup_mode"] is setup_mode
    assert state["source"] == "efivars"
    assert ("Setup Mode" in state["detail"]) is setup_mode


def test_secure_boot_old_sysfs_vars_interface(tmp_path):
    directory = tmp_path / "firmware" / "efi" / "vars" / SECURE_BOOT_VAR
    directory.mkdir(parents=True)
    (directory / "data").write_bytes(b"\x01")
    state = secure_boot_state(str(tmp_path))
    assert (state["enabled"], state["source"]) == (True, "efivars")


def test_uefi_without_secure_boot_variable(tmp_path):
    fake_sysfs.add_efivars(tmp_path, secure_boot=None, setup_mode=None, other=True)
    state = secure_boot_state(str(tmp_path), mokutil_runner=lambda: pytest.fail("mokutil must not run"))
    assert (state["enabled"], state["source"]) == (False, "efivars")


def test_unreadable_efivars_fall_back_to_mokutil(tmp_path):
    fake_sysfs.add_efi(tmp_path)  # efivarfs not mounted: empty directory
    calls = []

    def runner():
        calls.append(1)
        return "SecureBoot enabled\n"

    state = secure_boot_state(str(tmp_path), mokutil_runner=runner)
    assert calls == [1]
    assert (state["enabled"], state["source"], state["detail"]) == (True, "mokutil", "SecureBoot enabled")


def test_unreadable_efivars_without_mokutil_is_unknown(tmp_path):
    fake_sysfs.add_efi(tmp_path)
    for runner in (None, lambda: None):
        state = secure_boot_state(str(tmp_path), mokutil_runner=runner)
        assert state["enabled"] is None
        assert state["source"] == "unknown"
        assert "mokutil" in state["detail"]


# --- the loaded module -----------------------------------------------------------------------------

OPEN_LINE = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build  "
    "(dvs-builder@U16-I1-N07-12-3)  Fri Feb 28 01:02:03 UTC 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
PROPRIETARY_LINE = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  Wed Jul 16 18:21:45 UTC 2025\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)


@pytest.mark.parametrize(
    ("text", "version", "flavour"),
    [
        (OPEN_LINE, "570.124.06", "open"),
        (PROPRIETARY_LINE, "535.261.03", "proprietary"),
        ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.65.06  Release Build\n", "580.65.06", "open"),
        (
            "NVRM version: NVIDIA UNIX Kernel Module for aarch64  535.104.05  Sat Aug 19 ...\n",
            "535.104.05",
            "proprietary",
        ),
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  515.76  Mon Sep 12 19:21:56 UTC 2022\n",
            "515.76",
            "proprietary",
        ),
        ("garbage\n", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_proc_driver_version(text, version, flavour):
    assert parse_proc_driver_version(text) == {"version": version, "flavour": flavour}


@pytest.mark.parametrize(
    ("text", "version"),
    [("535.261.03\n", "535.261.03"), ("570.124.06", "570.124.06"), ("515.76\n", "515.76"), ("", None), (None, None)],
)
def test_parse_sys_module_version(text, version):
    assert parse_sys_module_version(text) == version


@pytest.mark.parametrize("flavour", ["open", "proprietary"])
def test_loaded_module(tmp_path, flavour):
    sysfs, procfs = tmp_path / "sys", tmp_path / "proc"
    fake_sysfs.add_loaded_driver(sysfs, procfs, "570.124.06", flavour)
    assert loaded_module(str(sysfs), str(procfs)) == {"loaded": True, "version": "570.124.06", "flavour": flavour}


def test_not_loaded(tmp_path):
    assert loaded_module(str(tmp_path / "sys"), str(tmp_path / "proc")) == {
        "loaded": False,
        "version": None,
        "flavour": None,
    }


def test_loaded_without_proc_has_no_flavour(tmp_path):
    sysfs = tmp_path / "sys"
    (sysfs / "module" / "nvidia").mkdir(parents=True)
    (sysfs / "module" / "nvidia" / "version").write_text("535.261.03\n")
    assert loaded_module(str(sysfs), str(tmp_path / "proc")) == {
        "loaded": True,
        "version": "535.261.03",
        "flavour": None,
    }


def test_nouveau(tmp_path):
    assert nouveau_loaded(str(tmp_path)) is False
    fake_sysfs.add_nouveau(tmp_path)
    assert nouveau_loaded(str(tmp_path)) is True


# --- userspace -------------------------------------------------------------------------------------


def test_installed_versions_across_library_dirs(tmp_path):
    fake_sysfs.add_userspace(tmp_path, "535.261.03", "usr/lib/x86_64-linux-gnu")
    fake_sysfs.add_userspace(tmp_path, "570.124.06", "usr/lib64")
    fake_sysfs.add_userspace(tmp_path, "550.163.01", "usr/lib/x86_64-linux-gnu/nvidia/current")  # Debian
    fake_sysfs.add_userspace(tmp_path, "570.124.06", "usr/local/nvidia/lib64")
    # Not versions: the soname link, the dev link, other libraries.
    (tmp_path / "usr" / "lib" / "libnvidia-ml.so").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "usr" / "lib" / "libnvidia-ml.so").write_text("")
    (tmp_path / "usr" / "lib" / "libcuda.so.580.82.07").write_text("")
    assert installed_versions(str(tmp_path)) == ["535.261.03", "550.163.01", "570.124.06"]
    assert installed_userspace(str(tmp_path)) == {
        "version": "570.124.06",
        "versions": ["535.261.03", "550.163.01", "570.124.06"],
    }


def test_installed_version_sorting_is_numeric(tmp_path):
    fake_sysfs.add_userspace(tmp_path, "570.9.1", "usr/lib64")
    fake_sysfs.add_userspace(tmp_path, "570.10", "usr/lib/aarch64-linux-gnu")
    assert installed_userspace(str(tmp_path))["version"] == "570.10"
    assert version_key("570.10") > version_key("570.9.1")
    assert version_key(None) == ()


def test_nothing_installed(tmp_path):
    assert installed_userspace(str(tmp_path)) == {"version": None, "versions": []}


# --- drift -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loaded", "installed", "state", "is_drift"),
    [
        ("570.124.06", "570.124.06", "in_sync", False),
        ("535.261.03", "570.124.06", "mismatch", True),
        ("570.124.06", "535.261.03", "mismatch", True),
        (None, "570.124.06", "not_loaded", True),
        ("570.124.06", None, "not_installed", True),
        (None, None, "absent", False),
    ],
)
def test_drift_states(loaded, installed, state, is_drift):
    result = drift(loaded, installed)
    assert result["state"] == state
    assert result["drift"] is is_drift
    assert result["message"]


def test_drift_messages_say_what_to_do():
    mismatch = drift("535.261.03", "570.124.06")["message"]
    assert "535.261.03" in mismatch and "570.124.06" in mismatch
    assert "Driver/library version mismatch" in mismatch
    assert "reboot" in mismatch and "modprobe nvidia" in mismatch
    not_loaded = drift(None, "570.124.06")["message"]
    assert "not loaded" in not_loaded and "reboot" in not_loaded and "modprobe nvidia" in not_loaded
    assert "Several" not in mismatch
    several = drift("570.124.06", "570.124.06", ["535.261.03", "570.124.06"])
    assert several["state"] == "in_sync"
    assert "Several libnvidia-ml versions are installed (535.261.03, 570.124.06)" in several["message"]


# --- containers, kernel ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("docker", "docker"), ("podman", "podman"), ("lxc", "lxc"), ("systemd-nspawn", "systemd-nspawn")],
)
def test_container_markers(tmp_path, kind, expected):
    root, procfs = tmp_path / "root", tmp_path / "proc"
    root.mkdir()
    fake_sysfs.add_container(root, procfs, kind)
    assert container_state(str(root), str(procfs)) == {"container": True, "type": expected}


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        ("12:pids:/kubepods/besteffort/pod1234/abcd\n", "kubernetes"),
        ("0::/system.slice/docker-0123abcd.scope\n", "docker"),
        ("1:name=systemd:/lxc/web01\n", "lxc"),
        ("0::/machine.slice/libpod-0123.scope\n", "podman"),
    ],
)
def test_container_from_cgroup(tmp_path, cgroup, expected):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "cgroup").write_text(cgroup)
    assert container_state(str(tmp_path), str(tmp_path / "proc")) == {"container": True, "type": expected}


def test_container_from_systemd_and_kubernetes(tmp_path):
    (tmp_path / "run" / "systemd").mkdir(parents=True)
    (tmp_path / "run" / "systemd" / "container").write_text("systemd-nspawn\n")
    assert container_state(str(tmp_path), str(tmp_path / "proc")) == {"container": True, "type": "systemd-nspawn"}
    (tmp_path / "run" / "systemd" / "container").unlink()
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "environ").write_bytes(b"PATH=/bin\0KUBERNETES_SERVICE_HOST=10.96.0.1\0")
    assert container_state(str(tmp_path), str(tmp_path / "proc")) == {"container": True, "type": "kubernetes"}
    (tmp_path / "proc" / "1" / "environ").write_bytes(b"PATH=/bin\0")
    (tmp_path / "run" / "secrets" / "kubernetes.io" / "serviceaccount").mkdir(parents=True)
    assert container_state(str(tmp_path), str(tmp_path / "proc")) == {"container": True, "type": "kubernetes"}


def test_not_a_container(tmp_path):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "cgroup").write_text("0::/init.scope\n")
    (tmp_path / "proc" / "1" / "environ").write_bytes(b"HOME=/\0TERM=linux\0")
    assert container_state(str(tmp_path), str(tmp_path / "proc")) == {"container": False, "type": None}
    assert container_state(str(tmp_path / "x"), str(tmp_path / "y")) == {"container": False, "type": None}


def test_kernel_release_and_headers(tmp_path):
    root, procfs = tmp_path / "root", tmp_path / "proc"
    fake_sysfs.add_kernel(root, procfs, "6.1.0-28-amd64", headers=True)
    fake_sysfs.add_kernel(root, procfs, "6.8.0-49-generic", headers=False)  # the running one now
    release = kernel_release(str(procfs))
    assert release == "6.8.0-49-generic"
    modules = os.path.join(str(root), "lib", "modules")
    assert headers_installed(release, modules, str(root)) is False
    assert headers_installed("6.1.0-28-amd64", modules, str(root)) is True
    assert headers_installed(None, modules) is False
    assert kernel_release(str(tmp_path / "none")) is None


def test_headers_build_symlink_resolves_under_root(tmp_path):
    root = tmp_path / "root"
    modules = root / "lib" / "modules" / "5.14.0-427.el9.x86_64"
    modules.mkdir(parents=True)
    os.symlink("/usr/src/kernels/5.14.0-427.el9.x86_64", str(modules / "build"))
    modules_path = str(root / "lib" / "modules")
    # EL ships the link with the kernel; it dangles until kernel-devel is installed.
    assert headers_installed("5.14.0-427.el9.x86_64", modules_path, str(root)) is False
    (root / "usr" / "src" / "kernels" / "5.14.0-427.el9.x86_64").mkdir(parents=True)
    assert headers_installed("5.14.0-427.el9.x86_64", modules_path, str(root)) is True
