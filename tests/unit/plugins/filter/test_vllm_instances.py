"""Unit tests for the vllm_instances filter."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gpubox.llm.plugins.filter.vllm_instances import FilterModule, vllm_instances


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
