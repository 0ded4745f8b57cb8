"""Unit tests for the vllm_instances filter."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gpubox.llm.plugins.filter.vllm_instances import FilterModule, vllm_gpu_sharing, vllm_instances


def test_defaults_are_filled_in():
    (item,) = vllm_instances([{"name": "chat", "model": "/srv/m", "port": 8000}])
    assert item["served_model_name"] == "chat"
    assert item["host"] == "127.0.0.1"
    assert item["gpus"] == []
    assert item["enabled"] is True
    assert item["api_key"] is None
    assert item["tensor_parallel_size"] == 1
    assert item["pipeline_parallel_size"] == 1
    assert item["url"] == "http://127.0.0.1:8000"
    assert item["endpoint"] == {"name": "chat", "model": "chat", "base_url": "http://127.0.0.1:8000/v1", "gpus": []}


def test_default_args_and_env_merge_under_the_instance():
    (item,) = vllm_instances(
        [{"name": "a", "model": "m", "port": 1, "args": {"max-model-len": 4096}, "env": {"X": "1"}}],
        {"max_model_len": 2048, "--enable-prefix-caching": True},
        {"X": "0", "Y": "2"},
    )
    assert item["args"] == {"max_model_len": 4096, "enable_prefix_caching": True}
    assert item["env"] == {"X": "1", "Y": "2"}


def test_parallel_sizes_are_read_from_either_spelling():
    (item,) = vllm_instances(
        [{"name": "a", "model": "m", "port": 1, "gpus": [0, 1, 2, 3], "args": {"tensor-parallel-size": "2"}}],
        {"pipeline_parallel_size": 2},
    )
    assert item["tensor_parallel_size"] == 2
    assert item["pipeline_parallel_size"] == 2


@pytest.mark.parametrize(
    ("host", "probe"),
    [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("10.1.2.3", "10.1.2.3"), ("fd00::1", "[fd00::1]")],
)
def test_probe_host_for_wildcards_and_ipv6(host, probe):
    (item,) = vllm_instances([{"name": "a", "model": "m", "port": 9, "host": host}])
    assert item["probe_host"] == probe
    assert item["url"] == f"http://{probe}:9"


def test_reserved_args_are_reported():
    (item,) = vllm_instances([{"name": "a", "model": "m", "port": 9, "args": {"port": 1, "--served-model-name": "x"}}])
    assert item["reserved_args"] == ["port", "served_model_name"]


def test_endpoint_carries_no_secret():
    (item,) = vllm_instances([{"name": "a", "model": "m", "port": 9, "api_key": "s3cr3t-key-123"}])
    assert item["api_key"] == "s3cr3t-key-123"
    assert "s3cr3t-key-123" not in repr(item["endpoint"])


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ("nope", "vllm_instances must be a list"),
        (["nope"], r"vllm_instances\[0\] must be a dict"),
        ([{"name": "a", "args": ["x"]}], r"\(a\): args must be a dict"),
        ([{"name": "a", "gpus": "0,1"}], r"\(a\): gpus must be a list"),
        ([{"name": "a", "args": {"tensor_parallel_size": "two"}}], "args.tensor_parallel_size must be an integer"),
    ],
)
def test_bad_input_names_the_problem(instances, message):
    with pytest.raises(AnsibleFilterError, match=message):
        vllm_instances(instances)


def test_bad_defaults_are_refused():
    with pytest.raises(AnsibleFilterError, match="vllm_default_args must be a dict"):
        vllm_instances([], ["x"])


def test_filter_is_registered():
    assert FilterModule().filters()["vllm_instances"] is vllm_instances


def test_embed_task_selects_the_pooling_runner():
    chat, embed, custom = vllm_instances(
        [
            {"name": "chat", "model": "m", "port": 1},
            {"name": "embed", "model": "e", "port": 2, "task": "embed"},
            {
                "name": "conv",
                "model": "c",
                "port": 3,
                "task": "embed",
                "args": {"runner": "pooling", "convert": "embed"},
            },
        ]
    )
    assert chat["task"] == "generate"
    assert "runner" not in chat["args"]
    assert embed["task"] == "embed"
    assert embed["args"] == {"runner": "pooling"}
    assert custom["args"] == {"runner": "pooling", "convert": "embed"}


def test_unknown_task_is_refused():
    with pytest.raises(AnsibleFilterError, match=r"task must be one of generate, embed, got 'rerank'"):
        vllm_instances([{"name": "a", "model": "m", "port": 1, "task": "rerank"}])


def test_auto_parallel_sizes_are_kept_for_the_planner():
    (item,) = vllm_instances([{"name": "a", "model": "m", "port": 1, "args": {"tensor_parallel_size": "auto"}}])
    assert item["tensor_parallel_size"] == "auto"
    assert item["pipeline_parallel_size"] == 1


def _inst(name, gpus, budget=None, enabled=True):
    args = {} if budget is None else {"gpu_memory_utilization": budget}
    (item,) = vllm_instances([{"name": name, "model": "m", "port": 1, "gpus": gpus, "args": args, "enabled": enabled}])
    return item


def test_disjoint_gpus_need_no_budget():
    assert vllm_gpu_sharing([_inst("a", [0, 1]), _inst("b", [2, 3])]) == []


def test_shared_gpu_without_budget_is_refused():
    (problem,) = vllm_gpu_sharing([_inst("chat", [0, 1]), _inst("embed", [1], 0.1)])
    assert problem.startswith(
        "GPU 1 is shared by chat (gpus [0, 1]) and embed (gpus [1]), but chat declares no budget."
    )
    assert "sum to 0.95 or less" in problem


def test_shared_gpu_budgets_must_fit():
    (problem,) = vllm_gpu_sharing([_inst("chat", [0], 0.8), _inst("auto", [0], 0.1), _inst("embed", [0], 0.1)])
    assert "whose budgets sum to 1 (chat 0.8 + auto 0.1 + embed 0.1), more than 0.95" in problem
    assert vllm_gpu_sharing([_inst("chat", [0], 0.7), _inst("auto", [0], 0.15), _inst("embed", [0], 0.1)]) == []


def test_disabled_instances_do_not_count_and_limit_is_configurable():
    assert vllm_gpu_sharing([_inst("a", [0]), _inst("b", [0], enabled=False)]) == []
    assert vllm_gpu_sharing([_inst("a", [0], 0.5), _inst("b", [0], 0.45)], 0.9) != []


def test_cpu_instances_share_the_host_memory():
    (problem,) = vllm_gpu_sharing([_inst("a", [], 0.3), _inst("b", [])], device="cpu")
    assert problem.startswith("the host memory (cpu) is shared by a (gpus none) and b (gpus none), but b declares")
    assert vllm_gpu_sharing([_inst("a", [], 0.3), _inst("b", [], 0.3)], device="cpu") == []
    assert vllm_gpu_sharing([_inst("a", [])], device="cpu") == []


def test_budget_must_be_a_number():
    with pytest.raises(AnsibleFilterError, match=r"args\.gpu_memory_utilization must be a number"):
        vllm_gpu_sharing([_inst("a", [0], "lots"), _inst("b", [0], 0.1)])


def test_absolute_kv_cache_counts_as_a_budget():
    (kv,) = vllm_instances([{"name": "kv", "model": "m", "port": 2, "args": {"kv_cache_memory_bytes": 2**28}}])
    assert vllm_gpu_sharing([_inst("a", [], 0.3), kv], device="cpu") == []


def test_plan_resolves_only_auto_args():
    items = [
        {"name": "a", "model": "m", "port": 1, "args": {"tensor_parallel_size": "auto", "max_model_len": "auto"}},
        {"name": "b", "model": "m", "port": 2, "args": {"max_model_len": 4096}},
    ]
    resolved = {
        "a": {"tensor_parallel_size": 2, "max_model_len": 32768},
        "b": {"tensor_parallel_size": 4, "max_model_len": 8192},
    }
    a, b = vllm_instances(items, None, None, resolved)
    assert a["args"] == {"tensor_parallel_size": 2, "max_model_len": 32768}
    assert a["tensor_parallel_size"] == 2
    assert b["args"] == {"max_model_len": 4096}
    assert b["tensor_parallel_size"] == 1
