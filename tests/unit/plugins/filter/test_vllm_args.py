"""Tests for the vllm_args and systemd_exec_args filters."""

from __future__ import annotations

import json
import shlex

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gpubox.llm.plugins.filter.vllm_args import (
    FilterModule,
    systemd_exec_args,
    vllm_args,
)


def test_filters_are_registered():
    filters = FilterModule().filters()
    assert filters["vllm_args"] is vllm_args
    assert filters["systemd_exec_args"] is systemd_exec_args


def test_booleans():
    assert vllm_args({"enable_prefix_caching": True, "enforce-eager": False}) == [
        "--enable-prefix-caching",
        "--no-enforce-eager",
    ]


def test_none_and_empty_list_are_omitted():
    assert vllm_args({"quantization": None, "api_key": [], "port": 8000}) == ["--port", "8000"]


def test_numbers_and_strings():
    assert vllm_args({"max_model_len": 8192, "gpu_memory_utilization": 0.9, "dtype": "bfloat16"}) == [
        "--max-model-len",
        "8192",
        "--gpu-memory-utilization",
        "0.9",
        "--dtype",
        "bfloat16",
    ]


def test_leading_dash_values_use_equals_form():
    assert vllm_args({"seed": -1, "chat_template_content_format": "-x", "served_model_name": ""}) == [
        "--seed=-1",
        "--chat-template-content-format=-x",
        "--served-model-name",
        "",
    ]


def test_lists():
    assert vllm_args({"cudagraph_capture_sizes": [1, 2, 4], "api-key": ("k1", "k2")}) == [
        "--cudagraph-capture-sizes",
        "1",
        "2",
        "4",
        "--api-key",
        "k1",
        "k2",
    ]


def test_dict_is_one_compact_json_word():
    args = vllm_args({"limit_mm_per_prompt": {"image": 2, "video": 0}, "compilation_config": {"a": [1, None, True]}})
    assert args == [
        "--limit-mm-per-prompt",
        '{"image":2,"video":0}',
        "--compilation-config",
        '{"a":[1,null,true]}',
    ]
    assert json.loads(args[1]) == {"image": 2, "video": 0}


def test_key_normalization_and_input_order():
    args = vllm_args({"--tensor_parallel_size": 2, "max-num-seqs": 8, "--host": "0.0.0.0", "b": 1, "a": 2})
    assert args == ["--tensor-parallel-size", "2", "--max-num-seqs", "8", "--host", "0.0.0.0", "--b", "1", "--a", "2"]


def test_dotted_key_keeps_suffix():
    assert vllm_args({"compilation_config.cudagraph_mode": "FULL"}) == [
        "--compilation-config.cudagraph_mode",
        "FULL",
    ]
    assert vllm_args({"compilation_config.mode": False}) == ["--no-compilation-config.mode"]


def test_empty_dict():
    assert vllm_args({}) == []


@pytest.mark.parametrize(
    "value, text",
    [
        (["--port", "8000"], "expects a dictionary"),
        ("--port 8000", "expects a dictionary"),
        (None, "expects a dictionary"),
        ({1: "x"}, "must be strings"),
        ({"max model len": 1}, "'max model len'"),
        ({"": 1}, "invalid option name"),
        ({"--": 1}, "invalid option name"),
        ({"-p": 1}, "invalid option name"),
        ({"port;rm": 1}, "invalid option name"),
        ({"a..b": 1}, "invalid option name"),
        ({"max_model_len": 1, "max-model-len": 2}, "both give --max-model-len"),
        ({"sizes": [1, [2]]}, "list item of --sizes"),
        ({"sizes": [True]}, "list item of --sizes"),
        ({"sizes": [None]}, "list item of --sizes"),
        ({"port": object()}, "value of --port"),
        ({"cfg": {"a": {1, 2}}}, "value of --cfg holds a set"),
        ({"cfg": {1: "a"}}, "value of --cfg has a key"),
    ],
)
def test_vllm_args_errors(value, text):
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args(value)
    assert text in str(err.value)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["/usr/bin/vllm", "serve", "org/model"], "/usr/bin/vllm serve org/model"),
        (["a b", "c"], '"a b" c'),
        (['say "hi"'], '"say \\"hi\\""'),
        (["back\\slash"], '"back\\\\slash"'),
        (["50%"], "50%%"),
        (["%h/x y"], '"%%h/x y"'),
        (["$HOME", "${X}"], '$$HOME "$${X}"'),
        ([""], '""'),
        ([";"], '";"'),
        (["it's"], '"it\'s"'),
        (["line1\nline2\ttab"], '"line1\\nline2\\ttab"'),
        (["bell\x07"], '"bell\\x07"'),
        (['{"image":2}'], '"{\\"image\\":2}"'),
        ([8000, 0.9], "8000 0.9"),
        ([], ""),
    ],
)
def test_systemd_exec_args(args, expected):
    assert systemd_exec_args(args) == expected


def test_systemd_round_trip_like_a_shell_split():
    # For args without %, $ and control characters systemd's splitting matches POSIX double quoting.
    args = ["/opt/vllm/bin/vllm", "serve", "my model", 'q"uote', "back\\slash", "", '--x={"a": 1}']
    assert shlex.split(systemd_exec_args(args)) == args


def test_vllm_args_then_systemd():
    line = systemd_exec_args(["/opt/vllm/bin/vllm", "serve", "m", *vllm_args({"limit_mm_per_prompt": {"image": 2}})])
    assert line == '/opt/vllm/bin/vllm serve m --limit-mm-per-prompt "{\\"image\\":2}"'


@pytest.mark.parametrize(
    "value, text",
    [
        ("/usr/bin/vllm serve", "expects a list"),
        ({"a": 1}, "expects a list"),
        (None, "expects a list"),
        (["ok", None], "got NoneType"),
        (["ok", True], "got bool"),
        (["ok", ["nested"]], "got list"),
    ],
)
def test_systemd_exec_args_errors(value, text):
    with pytest.raises(AnsibleFilterError) as err:
        systemd_exec_args(value)
    assert text in str(err.value)
