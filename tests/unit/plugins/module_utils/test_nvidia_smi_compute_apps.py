"""Unit tests for the --query-compute-apps parsing in plugins/module_utils/nvidia_smi.py."""

from __future__ import annotations

import os

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_smi import (
    QUERY_COMPUTE_APPS_FIELDS,
    NvidiaSmiCommandError,
    NvidiaSmiParseError,
    gpu_index_by_uuid,
    parse_query_compute_apps,
    parse_query_gpu,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "nvidia_smi")
BOXES = ["l40s_4x", "h100_sxm_8x", "rtx3090_8x", "a100_mig", "rtx6000_blackwell_1x", "l4_idle"]


def read(case, name):
    with open(os.path.join(FIXTURES, case, name)) as handle:
        return handle.read()


def test_fields_are_the_documented_names():
    # nvidia-smi --help-query-compute-apps: "pid", "gpu_uuid", "used_gpu_memory" or "used_memory",
    # "process_name" or "name". The free-text name comes last.
    assert QUERY_COMPUTE_APPS_FIELDS == ("pid", "gpu_uuid", "used_memory", "process_name")


@pytest.mark.parametrize("case", BOXES)
def test_every_process_is_on_a_gpu_of_its_box(case):
    apps = parse_query_compute_apps(read(case, "compute_apps.csv"))
    by_uuid = gpu_index_by_uuid(parse_query_gpu(read(case, "query_gpu.csv")))
    for app in apps:
        assert set(app) == {"pid", "gpu_uuid", "used_memory_mib", "process_name"}
        assert isinstance(app["pid"], int) and app["pid"] > 0
        assert app["gpu_uuid"].lower() in by_uuid


def test_l40s_two_tp2_instances():
    apps = parse_query_compute_apps(read("l40s_4x", "compute_apps.csv"))
    assert [a["pid"] for a in apps] == [48213, 48214, 48731, 48732]
    assert [a["process_name"] for a in apps] == ["VLLM::Worker_TP0", "VLLM::Worker_TP1"] * 2
    assert {a["used_memory_mib"] for a in apps} == {40986}
    assert apps[0]["gpu_uuid"] == "GPU-8623121d-e0bb-f37a-9459-4d8b75673fca"


def test_h100_tp8_one_worker_per_gpu():
    apps = parse_query_compute_apps(read("h100_sxm_8x", "compute_apps.csv"))
    by_uuid = gpu_index_by_uuid(parse_query_gpu(read("h100_sxm_8x", "query_gpu.csv")))
    assert [by_uuid[a["gpu_uuid"].lower()] for a in apps] == list(range(8))
    assert [a["process_name"] for a in apps] == [f"VLLM::Worker_TP{i}" for i in range(8)]


def test_mig_memory_not_available_is_none():
    apps = parse_query_compute_apps(read("a100_mig", "compute_apps.csv"))
    assert apps[0] == {
        "pid": 15530,
        "gpu_uuid": "GPU-e60922ca-8aba-63ed-64d9-4a354580711b",
        "used_memory_mib": None,
        "process_name": "python",
    }
    assert apps[1]["used_memory_mib"] == 72880


def test_path_names_are_kept():
    apps = parse_query_compute_apps(read("rtx3090_8x", "compute_apps.csv"))
    assert apps[-1]["process_name"] == "/home/ana/.venv/bin/python3"


@pytest.mark.parametrize(
    "output", ["", "\n", "No running processes found\n", "  No running compute processes found  \n"]
)
def test_no_processes(output):
    assert parse_query_compute_apps(output) == []


def test_process_name_with_commas_and_units():
    out = "1234, GPU-x, 812 MiB, python3 -c import torch, time\n"
    assert parse_query_compute_apps(out) == [
        {"pid": 1234, "gpu_uuid": "GPU-x", "used_memory_mib": 812, "process_name": "python3 -c import torch, time"}
    ]


@pytest.mark.parametrize(
    "value",
    ["[N/A]", "N/A", "[Not Supported]", "[Insufficient Permissions]"],
)
def test_not_available_values(value):
    (app,) = parse_query_compute_apps(f"77, GPU-x, {value}, {value}\n")
    assert app["used_memory_mib"] is None
    assert app["process_name"] is None


def test_one_process_on_two_gpus_gives_two_lines():
    out = "500, GPU-a, 300, python3\n500, GPU-b, 20000, python3\n"
    apps = parse_query_compute_apps(out)
    assert [(a["pid"], a["gpu_uuid"], a["used_memory_mib"]) for a in apps] == [
        (500, "GPU-a", 300),
        (500, "GPU-b", 20000),
    ]


def test_other_field_orders_and_aliases():
    fields = ("gpu_uuid", "pid", "used_gpu_memory", "name")
    (app,) = parse_query_compute_apps("GPU-x, 12, 100, a, b\n", fields=fields)
    assert app == {"pid": 12, "gpu_uuid": "GPU-x", "used_memory_mib": 100, "process_name": "a, b"}
    (app,) = parse_query_compute_apps("12, GPU-x\n", fields=("pid", "gpu_uuid"))
    assert app == {"pid": 12, "gpu_uuid": "GPU-x", "used_memory_mib": None, "process_name": None}
    with pytest.raises(ValueError, match="last"):
        parse_query_compute_apps("", fields=("process_name", "pid", "gpu_uuid"))


@pytest.mark.parametrize(
    "line, message",
    [
        ("48213, GPU-x\n", "expected 4 fields, got 2"),
        ("pid48213, GPU-x, 10, a\n", "field pid: expected an integer"),
        ("[N/A], GPU-x, 10, a\n", "field pid: missing"),
        ("0, GPU-x, 10, a\n", "field pid: missing"),
        ("12, [N/A], 10, a\n", "field gpu_uuid: missing"),
        ("12, GPU-x, lots, a\n", "field used_memory: expected an integer, got 'lots'"),
    ],
)
def test_malformed_lines(line, message):
    out = "1, GPU-a, 5, ok\n" + line
    with pytest.raises(NvidiaSmiParseError) as err:
        parse_query_compute_apps(out)
    assert message in str(err.value)
    assert "--query-compute-apps output, line 2" in str(err.value)
    assert err.value.line_number == 2


def test_known_errors_raise_command_errors():
    with pytest.raises(NvidiaSmiCommandError) as err:
        parse_query_compute_apps(read("driver_mismatch", "output.txt"))
    assert err.value.kind == "driver_library_mismatch"


def test_gpu_index_by_uuid_is_case_insensitive_by_lower_keys():
    gpus = parse_query_gpu(read("l40s_4x", "query_gpu.csv"))
    by_uuid = gpu_index_by_uuid(gpus)
    assert by_uuid["gpu-46f14170-5930-0965-c313-063d20dd02f4"] == 3
    assert len(by_uuid) == 4
    assert gpu_index_by_uuid([{"index": 0, "uuid": None}]) == {}
