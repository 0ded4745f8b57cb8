"""Tests for the container_toolkit role's filters."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gpubox.llm.plugins.filter.container_toolkit import (
    FilterModule,
    cdi_spec_driver_version,
    dev_char_missing,
    docker_daemon_config,
    nvidia_ctk_configure_reasons,
)

# What `nvidia-ctk runtime configure --runtime=docker --set-as-default --cdi.enabled` writes (pkg/config/engine/docker).
CONFIGURED = {
    "default-runtime": "nvidia",
    "features": {"cdi": True},
    "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
}

# Excerpt of `nvidia-ctk cdi generate` output for driver 570.124.06.
SPEC = """---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
containerEdits:
  hooks:
  - args:
    - nvidia-cdi-hook
    - create-symlinks
    - --link
    - libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so
    hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
  mounts:
  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.570.124.06
    hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.570.124.06
    options: [ro, nosuid, nodev, bind]
  - containerPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.570.124.06
    hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.570.124.06
    options: [ro, nosuid, nodev, bind]
  - containerPath: /usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.570.124.06
    hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.570.124.06
"""

# `nvidia-ctk system create-dev-char-symlinks --create-all --dry-run` log (logrus text format, on stderr).
DRY_RUN = """time="2026-01-01T00:00:00Z" level=info msg="Creating link /dev/char/195:254 => /dev/nvidia-modeset"
time="2026-01-01T00:00:00Z" level=info msg="Creating link /dev/char/195:255 => /dev/nvidiactl"
time="2026-01-01T00:00:00Z" level=info msg="Creating link /dev/char/509:0 => /dev/nvidia-uvm"
INFO[0000] Creating link /dev/char/195:0 => /dev/nvidia0
"""


def test_filters_are_registered():
    filters = FilterModule().filters()
    assert filters == {
        "docker_daemon_config": docker_daemon_config,
        "nvidia_ctk_configure_reasons": nvidia_ctk_configure_reasons,
        "cdi_spec_driver_version": cdi_spec_driver_version,
        "dev_char_missing": dev_char_missing,
    }


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_missing_or_empty_daemon_json_is_an_empty_config(text):
    assert docker_daemon_config(text) == {"valid": True, "config": {}, "error": ""}


def test_valid_daemon_json():
    result = docker_daemon_config('{"log-driver": "journald", "runtimes": {}}')
    assert result == {"valid": True, "config": {"log-driver": "journald", "runtimes": {}}, "error": ""}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"log-driver": "journald",}', "it is not valid JSON"),
        ("[1, 2]", "it is a JSON array, not an object"),
        ('"runtimes"', "it is a JSON string, not an object"),
        ("null", "it is a JSON null, not an object"),
        ('{"runtimes": ["nvidia"]}', '"runtimes" is a JSON array; Docker and nvidia-ctk expect an object'),
        ('{"features": true}', '"features" is a JSON boolean; Docker and nvidia-ctk expect an object'),
        ('{"default-runtime": 1}', '"default-runtime" is a JSON number; Docker and nvidia-ctk expect a string'),
    ],
)
def test_malformed_daemon_json(text, error):
    result = docker_daemon_config(text)
    assert result["valid"] is False
    assert result["config"] == {}
    assert result["error"].startswith(error), result["error"]


def test_daemon_json_error_names_the_position():
    assert "line 2 column 1" in docker_daemon_config('{"a": 1,\n}')["error"]


def test_daemon_config_rejects_non_text():
    with pytest.raises(AnsibleFilterError, match="expects the file's text"):
        docker_daemon_config({"a": 1})


def test_empty_config_needs_the_runtime():
    assert nvidia_ctk_configure_reasons({}) == ["runtimes.nvidia is missing"]


def test_configured_daemon_needs_nothing():
    assert nvidia_ctk_configure_reasons(CONFIGURED, set_as_default=True, enable_cdi=True) == []


def test_other_runtimes_are_not_enough():
    config = {"runtimes": {"crun": {"path": "/usr/bin/crun"}}}
    assert nvidia_ctk_configure_reasons(config) == ["runtimes.nvidia is missing"]


def test_runtime_without_path():
    assert nvidia_ctk_configure_reasons({"runtimes": {"nvidia": {}}}) == ["runtimes.nvidia has no path"]


def test_default_runtime_only_when_asked():
    config = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    assert nvidia_ctk_configure_reasons(config) == []
    assert nvidia_ctk_configure_reasons(config, set_as_default=True) == ["default-runtime is unset (runc), not nvidia"]
    config["default-runtime"] = "runc"
    assert nvidia_ctk_configure_reasons(config, set_as_default=True) == ["default-runtime is runc, not nvidia"]
    # Not asking for the default never asks to change an existing one.
    assert nvidia_ctk_configure_reasons(dict(CONFIGURED), set_as_default=False) == []


def test_cdi_feature_only_when_asked():
    config = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "features": {"cdi": False}}
    assert nvidia_ctk_configure_reasons(config) == []
    assert nvidia_ctk_configure_reasons(config, enable_cdi=True) == ["features.cdi is not true"]
    assert nvidia_ctk_configure_reasons({**config, "features": {"cdi": "true"}}, enable_cdi=True) == [
        "features.cdi is not true"
    ]


def test_all_reasons_together():
    assert nvidia_ctk_configure_reasons({}, set_as_default=True, enable_cdi=True) == [
        "runtimes.nvidia is missing",
        "default-runtime is unset (runc), not nvidia",
        "features.cdi is not true",
    ]


def test_configure_reasons_reject_non_mapping():
    with pytest.raises(AnsibleFilterError, match=r"expects the parsed daemon\.json object"):
        nvidia_ctk_configure_reasons("{}")


def test_spec_driver_version():
    assert cdi_spec_driver_version(SPEC) == "570.124.06"


def test_spec_driver_version_prefers_the_most_mounted():
    stale = SPEC + "  - hostPath: /usr/lib64/libcuda.so.550.54.15\n"
    assert cdi_spec_driver_version(stale) == "570.124.06"


def test_spec_driver_version_two_part_versions():
    assert cdi_spec_driver_version("hostPath: /usr/lib64/libnvidia-ml.so.535.54\n") == "535.54"


@pytest.mark.parametrize("text", [None, "", "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n", "libcuda.so.1"])
def test_spec_without_driver_libraries(text):
    assert cdi_spec_driver_version(text) is None


def test_spec_driver_version_rejects_non_text():
    with pytest.raises(AnsibleFilterError, match="expects the spec's text"):
        cdi_spec_driver_version(["libcuda.so.570.124.06"])


def test_dev_char_all_missing():
    assert dev_char_missing(DRY_RUN, []) == [
        "/dev/char/195:254",
        "/dev/char/195:255",
        "/dev/char/509:0",
        "/dev/char/195:0",
    ]


def test_dev_char_existing_by_path_or_name():
    existing = ["/dev/char/195:254", "195:255", "/dev/char/509:0", "/dev/char/195:0", "/dev/char/4:1"]
    assert dev_char_missing(DRY_RUN, existing) == []
    assert dev_char_missing(DRY_RUN, ["195:255", "195:0"]) == ["/dev/char/195:254", "/dev/char/509:0"]


def test_dev_char_duplicates_and_noise():
    output = DRY_RUN + DRY_RUN + 'level=warning msg="Could not create symlink: file exists"\n'
    assert len(dev_char_missing(output, [])) == 4
    assert dev_char_missing(None, []) == []
    assert dev_char_missing("", []) == []


@pytest.mark.parametrize(("output", "existing"), [(1, []), ("x", "195:0"), ("x", None)])
def test_dev_char_rejects_bad_input(output, existing):
    with pytest.raises(AnsibleFilterError):
        dev_char_missing(output, existing)
