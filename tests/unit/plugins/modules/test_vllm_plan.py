"""Unit tests for the gpubox.llm.vllm_plan module (the arithmetic itself is tested in test_vram.py)."""

from __future__ import annotations

import json
import os

from ansible_collections.gpubox.llm.plugins.modules import vllm_plan

from ..module_utils.test_vram import (
    L40S_4X,
    RTX3090_8X,
    RTX3090_TOPOLOGY,
    TINY_LLAMA,
    hf_tensors,
    load,
    make_folder,
)
from .utils import run_module


def run(check_mode=False, **args):
    return run_module(vllm_plan.main, args, check_mode=check_mode)


def test_model_folder_with_gpu_facts(tmp_path):
    folder = make_folder(tmp_path, TINY_LLAMA, hf_tensors(TINY_LLAMA), shards=2, name="tiny-llama")
    result, failed = run(model_path=folder, gpus=L40S_4X, gpu_indices=[2, 3], tensor_parallel_size="auto")
    assert not failed, result
    plan = result["plan"]
    assert result["changed"] is False
    assert plan["fits"] and plan["tensor_parallel_size"] == 1 and plan["gpu_indices"] == [2]
    assert plan["model"]["name"] == "tiny-llama"
    assert plan["model"]["weights_source"] == "safetensors headers"
    assert plan["weight_bytes"] == plan["model"]["checkpoint_bytes"]
    assert plan["max_model_len"] == 2048
    assert plan["vllm_args"] == {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "max_model_len": 2048}
    for key in (
        "weight_bytes_per_gpu",
        "reserve_bytes",
        "reserve",
        "kv_bytes_per_token",
        "kv_cache_bytes",
        "kv_tokens",
        "max_concurrency",
        "reasons",
        "alternatives",
    ):
        assert key in plan


def test_check_mode_plans_the_same(tmp_path):
    args = dict(config=load("Llama-3.1-8B-Instruct"), gpu_memory_mib=46068, max_model_len=32768)
    normal, _failed = run(**args)
    check, failed = run(check_mode=True, **args)
    assert not failed and check["plan"] == normal["plan"]


def test_config_with_size_and_count():
    result, failed = run(
        config=load("Llama-3.1-70B-Instruct"),
        gpu_memory_mib=24576,
        gpu_count=8,
        tensor_parallel_size="8",
        max_model_len="auto",
    )
    assert not failed, result["msg"] if failed else None
    assert result["plan"]["tensor_parallel_size"] == 8
    assert 0 < result["plan"]["max_model_len"] < 131072


def test_string_numbers_from_templates():
    result, failed = run(
        config=load("SmolLM2-135M-Instruct"),
        device="cpu",
        kv_cache_memory_bytes=1589137899,
        dtype="bfloat16",
        max_model_len="2048",
        tensor_parallel_size="1",
    )
    assert not failed
    assert result["plan"]["kv_tokens"] == 68864 and result["plan"]["max_model_len"] == 2048


def test_no_fit_fails_with_alternatives():
    result, failed = run(
        config=load("Llama-3.1-70B-Instruct"),
        name="Llama-3.1-70B-Instruct",
        gpus=RTX3090_8X,
        topology=RTX3090_TOPOLOGY,
        tensor_parallel_size=8,
    )
    assert failed
    msg = result["msg"]
    assert msg.startswith("Llama-3.1-70B-Instruct does not fit with tensor_parallel_size 8")
    assert "max_model_len 131,072 needs" in msg
    assert "Alternatives that fit: 1) fp8 KV cache" in msg and "2) max_model_len" in msg and "3) a 4-bit AWQ" in msg
    assert result["plan"]["fits"] is False and len(result["plan"]["alternatives"]) == 3


def test_no_fit_reported_without_failing():
    result, failed = run(
        config=load("Llama-3.1-70B-Instruct"), gpus=RTX3090_8X, tensor_parallel_size=8, fail_on_no_fit=False
    )
    assert not failed
    assert result["plan"]["fits"] is False and result["plan"]["alternatives"]


def test_bad_tensor_parallel_size():
    result, failed = run(config=load("Llama-3.1-8B-Instruct"), gpus=RTX3090_8X, tensor_parallel_size=3)
    assert failed
    assert "tensor_parallel_size 3 does not work" in result["msg"]
    assert "32 attention heads, 8 KV heads" in result["msg"] and "Valid sizes up to 8: 1, 2, 4, 8" in result["msg"]


def test_folder_without_config_json(tmp_path):
    (tmp_path / "empty").mkdir()
    result, failed = run(model_path=str(tmp_path / "empty"), gpu_memory_mib=24576)
    assert failed
    assert result["msg"] == f"{tmp_path / 'empty'} has no config.json, so it is not a Hugging Face model folder"


def test_model_path_and_config_exclude_each_other(tmp_path):
    folder = make_folder(tmp_path, TINY_LLAMA)
    result, failed = run(model_path=folder, config=TINY_LLAMA, gpu_memory_mib=24576)
    assert failed and "mutually exclusive" in result["msg"]
    result, failed = run(gpu_memory_mib=24576)
    assert failed and "one of the following is required" in result["msg"]


def test_no_gpu_memory():
    result, failed = run(config=load("Llama-3.1-8B-Instruct"))
    assert failed and result["msg"].startswith("no GPU memory known")


def test_folder_from_the_fixtures_is_json(tmp_path):
    # The fixture configs are valid config.json files for a model folder.
    for name in sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hf_configs"))):
        if not name.endswith(".json"):
            continue
        folder = tmp_path / name[:-5]
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(load(name[:-5])))
        result, failed = run(
            model_path=str(folder),
            gpus=RTX3090_8X,
            tensor_parallel_size="auto",
            max_model_len="auto",
            fail_on_no_fit=False,
        )
        assert not failed, (name, result.get("msg"))
        assert result["plan"]["model"]["weights_source"].startswith("estimated from config.json")
