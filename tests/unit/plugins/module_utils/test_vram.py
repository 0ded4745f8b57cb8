"""Unit tests for plugins/module_utils/vram.py: the VRAM and KV cache arithmetic of the vLLM planner.

Configs in tests/unit/fixtures/hf_configs/ are public config.json files (see the README there). Safetensors
checkpoints are written here, header only: the planner reads headers and never tensor data.

``UPDATE_PLANNER_DOCS=1 pytest tests/unit/plugins/module_utils/test_vram.py`` rewrites the generated tables
of docs/planner.md; without it, a test fails when they are out of date.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils import vram
from ansible_collections.gpubox.llm.plugins.module_utils.vram import GiB, MiB, VramError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "unit", "fixtures", "hf_configs")
DOC = os.path.join(ROOT, "docs", "planner.md")

BITS = vram.SAFETENSORS_DTYPE_BITS

# GPUs as gpu_info returns them (memory_total_mib from the recorded nvidia-smi fixtures).
L40S_4X = [{"index": i, "name": "NVIDIA L40S", "memory_total_mib": 46068} for i in range(4)]
RTX3090_8X = [{"index": i, "name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576} for i in range(8)]
RTX3090_TOPOLOGY = {"nvlink_groups": [[0, 1], [2], [3], [4], [5], [6], [7]]}
RTX6000_1X = [{"index": 0, "name": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "memory_total_mib": 97887}]
H100_8X = [{"index": i, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559} for i in range(8)]
H100_TOPOLOGY = {"nvlink_groups": [list(range(8))]}


def load(name):
    with open(os.path.join(FIXTURES, name + ".json")) as handle:
        return json.load(handle)


def model_of(name, **overrides):
    config = dict(load(name), **overrides)
    return vram.describe_model(config, name=name)


def write_safetensors(path, tensors, data=False):
    """Write a safetensors file: ``tensors`` maps names to (dtype, shape). Header only unless ``data``."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        size = math.ceil(math.prod(shape) * BITS[dtype] / 8)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        if data:
            handle.write(b"\0" * offset)
    return offset


def hf_tensors(config, dtype="BF16", quant=None, extra_layers=0):
    """The tensor names and shapes a Hugging Face checkpoint of ``config`` holds (Llama, MoE and MLA layouts).

    ``quant="awq"`` writes AWQ's packed int32 qweight/qzeros and fp16 scales (group 128) for linear layers.
    """
    m = vram.describe_model(config)
    h, a, k, d, v = m["hidden_size"], m["num_attention_heads"], m["num_kv_heads"], m["head_dim"], m["vocab_size"]
    out = {"model.embed_tokens.weight": (dtype, (v, h)), "model.norm.weight": (dtype, (h,))}
    if not m["tie_word_embeddings"]:
        out["lm_head.weight"] = (dtype, (v, h))

    def linear(name, n_in, n_out):
        if quant == "awq":
            out[name + ".qweight"] = ("I32", (n_in, n_out // 8))
            out[name + ".qzeros"] = ("I32", (n_in // 128, n_out // 8))
            out[name + ".scales"] = ("F16", (n_in // 128, n_out))
        else:
            out[name + ".weight"] = (dtype, (n_out, n_in))

    for i in range(m["num_layers"] + extra_layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (dtype, (h,))
        out[p + "post_attention_layernorm.weight"] = (dtype, (h,))
        mla = m["mla"]
        if mla:
            qk = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
            linear(p + "self_attn.q_a_proj", h, mla["q_lora_rank"])
            out[p + "self_attn.q_a_layernorm.weight"] = (dtype, (mla["q_lora_rank"],))
            linear(p + "self_attn.q_b_proj", mla["q_lora_rank"], a * qk)
            linear(p + "self_attn.kv_a_proj_with_mqa", h, mla["kv_lora_rank"] + mla["qk_rope_head_dim"])
            out[p + "self_attn.kv_a_layernorm.weight"] = (dtype, (mla["kv_lora_rank"],))
            linear(p + "self_attn.kv_b_proj", mla["kv_lora_rank"], a * (mla["qk_nope_head_dim"] + mla["v_head_dim"]))
            linear(p + "self_attn.o_proj", a * mla["v_head_dim"], h)
        else:
            linear(p + "self_attn.q_proj", h, a * d)
            linear(p + "self_attn.k_proj", h, k * d)
            linear(p + "self_attn.v_proj", h, k * d)
            linear(p + "self_attn.o_proj", a * d, h)
        if m["moe"] and vram.is_moe_layer(m, i % m["num_layers"]):
            moe = m["moe"]
            out[p + "mlp.gate.weight"] = (dtype, (moe["experts"], h))
            for e in range(moe["experts"]):
                for proj, n_in, n_out in (
                    ("gate_proj", h, moe["intermediate_size"]),
                    ("up_proj", h, moe["intermediate_size"]),
                    ("down_proj", moe["intermediate_size"], h),
                ):
                    linear(f"{p}mlp.experts.{e}.{proj}", n_in, n_out)
            if moe["shared_intermediate_size"]:
                s = moe["shared_intermediate_size"]
                linear(p + "mlp.shared_experts.gate_proj", h, s)
                linear(p + "mlp.shared_experts.up_proj", h, s)
                linear(p + "mlp.shared_experts.down_proj", s, h)
        else:
            linear(p + "mlp.gate_proj", h, m["intermediate_size"])
            linear(p + "mlp.up_proj", h, m["intermediate_size"])
            linear(p + "mlp.down_proj", m["intermediate_size"], h)
    return out


def make_folder(tmp_path, config, tensors=None, shards=1, name="model"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    if tensors is None:
        return str(folder)
    names = list(tensors)
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors)
        return str(folder)
    weight_map = {}
    per = math.ceil(len(names) / shards)
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s * per : (s + 1) * per]}
        write_safetensors(folder / file, part)
        weight_map.update(dict.fromkeys(part, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return str(folder)


TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "num_hidden_layers": 4,
    "vocab_size": 1024,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
TINY_MLA_MOE = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 256,
    "intermediate_size": 512,
    "moe_intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "num_hidden_layers": 3,
    "first_k_dense_replace": 1,
    "n_routed_experts": 4,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "kv_lora_rank": 64,
    "q_lora_rank": 96,
    "qk_rope_head_dim": 16,
    "qk_nope_head_dim": 32,
    "v_head_dim": 32,
    "vocab_size": 512,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


# --- safetensors headers -------------------------------------------------------------------------------


def test_header_dtype_sizes(tmp_path):
    tensors = {
        "f32": ("F32", (3, 5)),
        "bf16": ("BF16", (7,)),
        "f16": ("F16", (2, 2, 2)),
        "fp8": ("F8_E4M3", (16, 4)),
        "i8": ("I8", (9,)),
        "u8": ("U8", (1, 3)),
        "packed": ("I32", (128, 16)),
    }
    path = tmp_path / "m.safetensors"
    total = write_safetensors(path, tensors, data=True)
    read = vram.read_safetensors_header(str(path))
    assert "__metadata__" not in read
    expected = {"f32": 60, "bf16": 14, "f16": 16, "fp8": 64, "i8": 9, "u8": 3, "packed": 128 * 16 * 4}
    assert {n: t["nbytes"] for n, t in read.items()} == expected
    assert sum(expected.values()) == total
    assert read["packed"]["numel"] == 2048 and read["packed"]["dtype"] == "I32"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02", "shorter than its 8-byte header"),
        (struct.pack("<Q", 1 << 40), "header length"),
        (struct.pack("<Q", 10) + b"not json!!", "not JSON"),
        (struct.pack("<Q", 40) + b"{}", "truncated"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_header_errors(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(VramError, match=message):
        vram.read_safetensors_header(str(path))


def test_header_offsets_must_match_shape(tmp_path):
    raw = json.dumps({"w": {"dtype": "BF16", "shape": [4, 4], "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(VramError, match="spans 16 bytes, expected 32"):
        vram.read_safetensors_header(str(path))


def test_sharded_index_reads_every_shard(tmp_path):
    tensors = hf_tensors(TINY_LLAMA)
    folder = make_folder(tmp_path, TINY_LLAMA, tensors, shards=3)
    read = vram.read_model_folder(folder)
    assert read["files"] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert set(read["tensors"]) == set(tensors)
    assert read["checkpoint_bytes"] == sum(math.prod(shape) * 2 for _dtype, shape in tensors.values())


def test_sharded_index_names_a_missing_shard(tmp_path):
    folder = make_folder(tmp_path, TINY_LLAMA, hf_tensors(TINY_LLAMA), shards=2)
    os.remove(os.path.join(folder, "model-00002-of-00002.safetensors"))
    with pytest.raises(VramError, match=r"missing: model-00002-of-00002\.safetensors"):
        vram.read_model_folder(folder)


def test_consolidated_files_are_not_counted_twice(tmp_path):
    folder = make_folder(tmp_path, TINY_LLAMA)
    write_safetensors(os.path.join(folder, "consolidated.safetensors"), {"x": ("BF16", (10,))})
    write_safetensors(os.path.join(folder, "model-00001-of-00001.safetensors"), {"y": ("BF16", (10,))})
    assert [os.path.basename(f) for f in vram.safetensors_files(folder)] == ["model-00001-of-00001.safetensors"]


def test_folder_without_config_json_is_named(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(VramError, match=r"weights has no config.json, so it is not a Hugging Face model folder"):
        vram.read_model_folder(str(tmp_path / "weights"))
    with pytest.raises(VramError, match="does not exist"):
        vram.read_model_folder(str(tmp_path / "nowhere"))


def test_folder_without_safetensors_is_estimated(tmp_path):
    folder = make_folder(tmp_path, TINY_LLAMA)
    result = vram.plan(model_path=folder, gpu_memory_bytes=8 * GiB)
    assert result["model"]["weights_source"] == "estimated from config.json"
    assert result["model"]["name"] == "model"


def test_side_quantize_config_is_read(tmp_path):
    folder = make_folder(tmp_path, TINY_LLAMA)
    (tmp_path / "model" / "quantize_config.json").write_text(
        json.dumps({"bits": 4, "group_size": 128, "quant_method": "gptq"})
    )
    model = vram.describe_model(vram.read_model_folder(folder)["config"])
    assert model["quantization"]["method"] == "gptq" and model["quantization"]["bits"] == 4


# --- weights from headers against the estimate -----------------------------------------------------------


@pytest.mark.parametrize("config", [TINY_LLAMA, dict(TINY_LLAMA, tie_word_embeddings=True), TINY_MLA_MOE])
def test_header_weights_equal_the_config_estimate(tmp_path, config):
    model = vram.describe_model(config)
    folder = make_folder(tmp_path, config, hf_tensors(config))
    read = vram.read_model_folder(folder)
    exact = vram.weights_from_tensors(model, read["tensors"], 2)
    estimate = vram.estimate_weights(model, 2)
    for key in ("embedding", "lm_head", "other"):
        assert exact[key] == estimate[key], key
    assert exact["layers"] == estimate["layers"]
    assert vram.weights_total(exact) == read["checkpoint_bytes"]


def test_float32_checkpoint_is_counted_at_the_serving_dtype(tmp_path):
    config = dict(TINY_LLAMA, torch_dtype="float32")
    folder = make_folder(tmp_path, config, hf_tensors(config, dtype="F32"))
    bf16 = vram.plan(model_path=folder, gpu_memory_bytes=8 * GiB)
    f32 = vram.plan(model_path=folder, gpu_memory_bytes=8 * GiB, dtype="float32")
    assert bf16["dtype"] == "bfloat16"  # vLLM serves a float32 checkpoint in 16 bits unless told otherwise
    assert f32["weight_bytes"] == 2 * bf16["weight_bytes"] == f32["model"]["checkpoint_bytes"]
    assert f32["kv_bytes_per_token"] == 2 * bf16["kv_bytes_per_token"]


def test_awq_headers_match_the_awq_estimate(tmp_path):
    config = dict(TINY_LLAMA, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128})
    folder = make_folder(tmp_path, config, hf_tensors(config, quant="awq"))
    exact = vram.plan(model_path=folder, gpu_memory_bytes=8 * GiB)
    estimated = vram.plan(config=config, gpu_memory_bytes=8 * GiB)
    assert exact["weight_bytes"] == estimated["weight_bytes"]
    assert exact["model"]["quantization"] == "awq"


def test_mtp_layer_is_skipped(tmp_path):
    folder = make_folder(tmp_path, TINY_MLA_MOE, hf_tensors(TINY_MLA_MOE, extra_layers=1))
    result = vram.plan(model_path=folder, gpu_memory_bytes=8 * GiB)
    assert result["model"]["skipped_bytes"] > 0
    assert result["weight_bytes"] + result["model"]["skipped_bytes"] == result["model"]["checkpoint_bytes"]


def test_weight_bytes_scale_the_estimate():
    result = vram.plan(config=load("Llama-3.1-8B-Instruct"), weight_bytes=10 * GiB, gpu_memory_bytes=48 * GiB)
    assert abs(result["weight_bytes"] - 10 * GiB) < 1024
    assert result["model"]["weights_source"].startswith("weight_bytes given")


def test_multimodal_text_config():
    config = {
        "architectures": ["Mistral3ForConditionalGeneration"],
        "model_type": "mistral3",
        "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
        "text_config": dict(load("Llama-3.1-8B-Instruct"), architectures=None, torch_dtype=None),
        "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24},
    }
    model = vram.describe_model(config)
    assert model["architecture"] == "Mistral3ForConditionalGeneration"
    assert (model["num_layers"], model["num_kv_heads"], model["dtype"]) == (32, 8, "bfloat16")
    assert model["quantization"]["method"] == "fp8"
    tensors = {
        "vision_tower.transformer.layers.0.attention.q_proj.weight": {
            "dtype": "BF16",
            "numel": 10,
            "nbytes": 20,
            "shape": [10],
        }
    }
    assert vram.weights_from_tensors(model, tensors, 2)["encoder"] == 20


# --- model arithmetic ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "per_token"),
    [
        ("SmolLM2-135M-Instruct", 23040),  # 30 layers x 3 KV heads x 64 x 2 (K, V) x 2 bytes
        ("Llama-3.1-8B-Instruct", 131072),  # 32 x 8 x 128 x 2 x 2
        ("Llama-3.1-70B-Instruct", 327680),  # 80 x 8 x 128 x 2 x 2
        ("Llama-2-13b-chat-hf", 819200),  # no GQA: 40 x 40 x 128 x 2 x 2
        ("DeepSeek-V3", 70272),  # MLA: (512 + 64) x 61 layers x 2 bytes
        ("Qwen3-30B-A3B", 98304),  # 48 x 4 x 128 x 2 x 2
        ("Mixtral-8x7B-Instruct-v0.1", 131072),
    ],
)
def test_kv_bytes_per_token(name, per_token):
    result = vram.plan(config=load(name), gpu_memory_bytes=80 * GiB, with_alternatives=False)
    assert result["kv_bytes_per_token"] == per_token


def test_gqa_against_the_naive_formula():
    model = model_of("Llama-3.1-70B-Instruct")
    naive = 2 * model["num_layers"] * model["hidden_size"] * 2  # K and V of the full hidden size, 2 bytes
    gqa = vram.kv_bytes_per_token_layer(model, "auto", 2) * model["num_layers"]
    assert naive == 8 * gqa  # 64 query heads share 8 KV heads


def test_mla_cache_is_not_split_by_tensor_parallelism():
    model = model_of("DeepSeek-V3")
    assert vram.kv_bytes_per_token_layer(model, "auto", 2, tp=8) == 576 * 2
    assert vram.kv_bytes_per_token_layer(model, "fp8", 1, tp=8) == 576
    assert vram.kv_bytes_per_token_layer(model, "fp8_ds_mla", 1) == 656


def test_kv_heads_replicate_beyond_their_count():
    model = model_of("Llama-3.1-8B-Instruct")
    assert vram.kv_bytes_per_token_layer(model, "auto", 2, tp=4) == 2 * 2 * 128 * 2
    assert vram.kv_bytes_per_token_layer(model, "auto", 2, tp=16) == 1 * 2 * 128 * 2


@pytest.mark.parametrize(
    ("name", "total", "active"),
    [
        ("Qwen3-30B-A3B", 30.5e9, 3.3e9),
        ("Qwen3-235B-A22B", 235e9, 22e9),
        ("Mixtral-8x7B-Instruct-v0.1", 46.7e9, 12.9e9),
        ("DeepSeek-V3", 671e9, 37e9),
        ("Llama-3.1-70B-Instruct", 70.6e9, 70.6e9),
    ],
)
def test_parameter_counts(name, total, active):
    params = vram.estimate_parameters(model_of(name))
    assert params["total"] == pytest.approx(total, rel=0.02)
    assert params["active"] == pytest.approx(active, rel=0.03)


def test_exact_dense_parameter_counts():
    assert vram.estimate_parameters(model_of("Llama-3.1-8B-Instruct"))["total"] == 8_030_261_248
    assert vram.estimate_parameters(model_of("SmolLM2-135M-Instruct"))["total"] == 134_515_008  # tied


def test_quantized_weight_estimates():
    def weights(name, **kw):
        model = model_of(name, **kw)
        return vram.weights_total(vram.estimate_weights(model, vram.serving_dtype(model)[1]))

    # hugging-quants' AWQ checkpoint is 5.73 GB: 4-bit layers, fp16 embedding and head.
    assert weights("Meta-Llama-3.1-8B-Instruct-AWQ-INT4") == pytest.approx(5.73e9, rel=0.01)
    # Qwen3-8B-FP8: fp8 layers with a float32 scale per 128 x 128 block, bf16 embedding and head.
    assert weights("Qwen3-8B-FP8") == pytest.approx(9.44e9, rel=0.01)
    # compressed-tensors FP8 with channel scales: Llama-3.3-70B-FP8-dynamic loads 33.88 GiB per GPU at TP 2
    # in vLLM's log (llm-d's measurements).
    ct = {
        "quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}},
    }
    assert weights("Llama-3.1-70B-Instruct", quantization_config=ct) / 2 == pytest.approx(33.88 * GiB, rel=0.01)
    # GPTQ 4-bit group 128, and a DeepSeek-V3 fp8 checkpoint of about 689 GB with its 14B MTP layer (skipped).
    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    assert weights("Llama-3.1-70B-Instruct", quantization_config=gptq) == pytest.approx(
        weights("Llama-3.1-70B-Instruct", quantization_config=dict(gptq, quant_method="awq")), rel=1e-9
    )
    assert weights("DeepSeek-V3") == pytest.approx(674e9, rel=0.01)


def test_rope_scaling_and_max_len():
    assert model_of("DeepSeek-V3")["max_model_len"] == 163840  # yarn: 4096 x 40
    assert model_of("Llama-3.1-8B-Instruct")["max_model_len"] == 131072  # llama3 rope is already counted
    qwen25 = dict(
        load("Qwen3-8B-FP8"),
        max_position_embeddings=32768,
        rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    )
    assert vram.describe_model(qwen25)["max_model_len"] == 131072
    dynamic = dict(TINY_LLAMA, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    assert vram.describe_model(dynamic)["max_model_len"] == 4096


def test_hybrid_layers_only_count_attention():
    config = dict(
        TINY_LLAMA, layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"]
    )
    result = vram.plan(config=config, gpu_memory_bytes=8 * GiB)
    assert result["kv_bytes_per_token"] == 1 * 2 * 2 * 32 * 2
    assert any("hybrid model" in r for r in result["reasons"])


# --- parallelism ---------------------------------------------------------------------------------------------


def test_valid_tensor_parallel_sizes():
    assert vram.valid_tp_sizes(model_of("Llama-3.1-8B-Instruct"), 8) == [1, 2, 4, 8]
    assert vram.valid_tp_sizes(model_of("SmolLM2-135M-Instruct"), 9) == [1, 3, 9]
    assert vram.valid_tp_sizes(model_of("Llama-2-13b-chat-hf"), 8) == [1, 2, 4, 5, 8]
    # vLLM refuses an fp8 block-quantized expert width that does not split into whole 128-column blocks.
    fp8_moe = model_of("Qwen3-30B-A3B", quantization_config={"quant_method": "fp8", "weight_block_size": [128, 128]})
    assert vram.valid_tp_sizes(fp8_moe, 8) == [1, 2]
    assert "moe_intermediate_size 768 / 4 is not a multiple of the fp8 weight block 128" in vram.tp_problems(fp8_moe, 4)


def test_pipeline_split_follows_vllm():
    assert vram.pp_layer_split(61, 4) == [(0, 15), (15, 30), (30, 46), (46, 61)]
    assert vram.pp_layer_split(80, 2) == [(0, 40), (40, 80)]
    assert vram.pp_layer_split(30, 1) == [(0, 30)]


def test_smallest_tp_that_fits_is_recommended():
    result = vram.plan(
        config=load("Llama-3.1-70B-Instruct"),
        gpus=H100_8X,
        topology=H100_TOPOLOGY,
        tensor_parallel_size="auto",
        max_model_len=32768,
    )
    # 131 GiB of bf16 weights: 65.7 GiB per GPU at TP 2 plus the reserve exceed 0.9 of an H100.
    assert result["fits"] and result["tensor_parallel_size"] == 4
    smaller = vram.plan(
        config=load("Llama-3.1-70B-Instruct"),
        gpus=H100_8X,
        tensor_parallel_size=2,
        max_model_len=32768,
        with_alternatives=False,
    )
    assert not smaller["fits"]
    assert smaller["reasons"][0].startswith("no memory left for the KV cache: weights 65.71 GiB per GPU")


def test_tp_stays_inside_an_nvlink_group():
    args = dict(config=load("Llama-2-13b-chat-hf"), gpus=RTX3090_8X, tensor_parallel_size="auto")
    pair = vram.plan(topology=RTX3090_TOPOLOGY, **args)
    assert pair["tensor_parallel_size"] == 2 and pair["gpu_indices"] == [0, 1]
    assert not any("spans NVLink" in r for r in pair["reasons"])
    other = vram.plan(topology={"nvlink_groups": [[0], [1], [2, 3], [4], [5], [6], [7]]}, **args)
    assert other["gpu_indices"] == [2, 3]


def test_tp_crossing_nvlink_groups_is_reported():
    result = vram.plan(
        config=load("Llama-3.1-70B-Instruct"),
        gpus=RTX3090_8X,
        topology=RTX3090_TOPOLOGY,
        tensor_parallel_size="auto",
        max_model_len="auto",
    )
    assert result["fits"] and result["tensor_parallel_size"] == 8
    assert any("spans NVLink groups" in r for r in result["reasons"])


def test_pipeline_parallel_across_nodes():
    gpus = [{"index": i, "memory_total_mib": 81559, "name": "NVIDIA H100 80GB HBM3"} for i in range(16)]
    result = vram.plan(
        config=load("DeepSeek-V3"),
        gpus=gpus,
        nodes=2,
        tensor_parallel_size="auto",
        pipeline_parallel_size="auto",
        max_model_len=32768,
    )
    assert (result["tensor_parallel_size"], result["pipeline_parallel_size"]) == (8, 2)
    assert [s["layers"] for s in result["stages"]] == [[0, 31], [31, 61]]
    assert result["fits"]


def test_explicit_layout_needs_enough_gpus():
    with pytest.raises(VramError, match="needs 16 GPUs, but only 8 are given"):
        vram.plan(
            config=load("Llama-3.1-8B-Instruct"), gpus=RTX3090_8X, tensor_parallel_size=8, pipeline_parallel_size=2
        )


# --- KV cache tokens ------------------------------------------------------------------------------------------


def test_smollm2_cpu_reference_figure():
    """vLLM's CPU backend printed 68,864 tokens for a 1.48 GiB KV cache of SmolLM2-135M at 2 bytes."""
    result = vram.plan(
        config=load("SmolLM2-135M-Instruct"),
        device="cpu",
        dtype="bfloat16",
        kv_cache_memory_bytes=int(1.48 * GiB),
        max_model_len=2048,
    )
    assert result["kv_tokens"] == pytest.approx(68864, rel=0.03)
    assert result["kv_tokens"] == 68864  # block size 128, as the CPU backend uses
    assert result["block_size"] == 128 and result["fits"]
    assert result["max_concurrency"] == pytest.approx(68864 / 2048, abs=0.01)
    assert result["kv_tokens_logged"] == 68864


def test_logged_tokens_follow_vllm_032():
    # vLLM 0.32 logs int(num_blocks / cdiv(max_model_len, block_size) * max_model_len).
    result = vram.plan(
        config=load("SmolLM2-135M-Instruct"),
        device="cpu",
        dtype="bfloat16",
        kv_cache_memory_bytes=int(1.48 * GiB),
        max_model_len=2000,
    )
    assert result["kv_tokens"] == 68864 and result["kv_tokens_logged"] == 538 * 2000 // 16


def test_mla_block_sizes():
    args = dict(config=load("DeepSeek-V3"), kv_cache_memory_bytes=GiB, max_model_len=4096, with_alternatives=False)
    assert vram.plan(device="cpu", **args)["block_size"] == 16
    assert vram.plan(gpu_memory_bytes=141 * GiB, gpu_count=8, **args)["block_size"] == 64


def test_num_blocks_formula():
    # available // page_size // layers, page_size = block_size x bytes per token and layer.
    result = vram.plan(
        config=load("SmolLM2-135M-Instruct"),
        device="cpu",
        dtype="float32",
        kv_cache_memory_bytes=256 * MiB,
        max_model_len=2048,
    )
    page = 128 * 3 * 64 * 2 * 4
    assert result["num_blocks"] == 256 * MiB // page // 30 == 45
    assert result["kv_tokens"] == 45 * 128
    assert result["kv_cache_bytes"] == 45 * page * 30


def test_max_model_len_boundary_on_cpu():
    # 2048 tokens need 16 blocks of 128 (196608 bytes x 30 layers at float32), plus the null block vLLM's block
    # pool holds back: vLLM 0.32 refused exactly 16 blocks ("the estimated maximum model length is 1920").
    need = 17 * 128 * 1536 * 30
    args = dict(config=load("SmolLM2-135M-Instruct"), device="cpu", dtype="float32", max_model_len=2048)
    assert vram.plan(kv_cache_memory_bytes=need, **args)["fits"]
    short = vram.plan(kv_cache_memory_bytes=need - 1, **args)
    assert not short["fits"]
    assert "max_model_len 2,048 needs" in short["reasons"][0]
    assert "one sequence can use 1,920 of its 2,048 tokens" in short["reasons"][0]
    auto_args = {**args, "max_model_len": "auto"}
    auto = vram.plan(kv_cache_memory_bytes=need - 1, **auto_args)
    assert auto["max_model_len"] == 1920


def test_cpu_ignores_fp8_kv_cache():
    result = vram.plan(
        config=load("SmolLM2-135M-Instruct"), device="cpu", kv_cache_dtype="fp8", kv_cache_memory_bytes=GiB
    )
    assert result["kv_cache_dtype"] == "auto"
    assert any("falls back to auto" in r for r in result["reasons"])


def test_fp8_kv_cache_doubles_the_tokens():
    args = dict(config=load("Llama-3.1-8B-Instruct"), gpus=L40S_4X[:1], max_model_len=8192)
    auto = vram.plan(**args)
    fp8 = vram.plan(kv_cache_dtype="fp8", **args)
    assert fp8["kv_bytes_per_token"] * 2 == auto["kv_bytes_per_token"]
    assert fp8["kv_tokens"] == pytest.approx(2 * auto["kv_tokens"], rel=0.001)
    assert fp8["vllm_args"]["kv_cache_dtype"] == "fp8"


def test_max_model_len_auto_picks_the_longest_that_fits():
    small = vram.plan(config=load("Llama-3.1-8B-Instruct"), gpus=RTX3090_8X[:1], max_model_len="auto")
    assert small["fits"]
    # One block less than the KV cache holds: the block pool keeps a null block.
    assert small["max_model_len"] == small["kv_tokens"] - small["block_size"] < 131072
    assert small["max_model_len"] % 16 == 0 and small["max_concurrency"] == 1.0
    big = vram.plan(config=load("Llama-3.1-8B-Instruct"), gpus=H100_8X[:1], max_model_len="auto")
    assert big["max_model_len"] == 131072 and big["kv_tokens"] > 131072
    assert vram.plan(config=load("Llama-3.1-8B-Instruct"), gpus=H100_8X[:1], max_model_len=-1)["max_model_len"] == (
        131072
    )


def test_max_model_len_auto_needs_a_useful_context():
    result = vram.plan(config=load("Llama-3.1-8B-Instruct"), gpu_memory_bytes=int(18.5 * GiB), max_model_len="auto")
    assert not result["fits"]
    assert result["reasons"][0].startswith("max_model_len auto: one sequence can use only")


def test_longer_than_the_model_does_not_fit():
    result = vram.plan(
        config=load("SmolLM2-135M-Instruct"), device="cpu", kv_cache_memory_bytes=4 * GiB, max_model_len=16384
    )
    assert not result["fits"]
    assert "longer than the model's maximum of 8,192" in result["reasons"][0]


def test_default_max_model_len_is_the_model_maximum():
    result = vram.plan(config=load("Qwen3-30B-A3B"), gpus=RTX6000_1X)
    assert result["max_model_len"] == 40960


# --- GPU budget ---------------------------------------------------------------------------------------------------


def test_h100_budget_against_vllm_log():
    """llm-d's vLLM log for Llama-3.1-8B on an H100 at 0.9: 14.99 GiB weights, 51.38 GiB KV cache."""
    result = vram.plan(config=load("Llama-3.1-8B-Instruct"), gpus=H100_8X[:1], max_model_len=16000)
    assert result["weight_bytes_per_gpu"] == pytest.approx(14.99 * GiB, rel=0.01)
    assert result["kv_available_bytes"] == pytest.approx(51.38 * GiB, rel=0.02)
    assert result["reserve"]["max_num_seqs"] == 1024 and result["reserve"]["max_num_batched_tokens"] == 8192


@pytest.mark.parametrize(
    ("vocab", "measured"),
    [(128256, 4.76), (151936, 5.56), (201088, 7.38)],  # Llama-3.1-8B, Qwen3-0.6B, gpt-oss-20b (llm-d)
)
def test_activation_peak_is_fitted_to_vllm_logs(vocab, measured):
    model = dict(vram.describe_model(TINY_LLAMA), vocab_size=vocab)
    assert vram.activation_bytes(model, 2, 1, 1024, 8192) == pytest.approx(measured * GiB, rel=0.03)


def test_batch_defaults_follow_vllm():
    assert vram.batch_defaults("cuda", 24 * GiB, "NVIDIA GeForce RTX 3090") == (256, 2048)
    assert vram.batch_defaults("cuda", 80 * GiB, "NVIDIA A100-SXM4-80GB") == (256, 2048)
    assert vram.batch_defaults("cuda", 80 * GiB, "NVIDIA H100 80GB HBM3") == (1024, 8192)
    assert vram.batch_defaults("cuda", 180 * GiB, "NVIDIA B200") == (1024, 16384)
    assert vram.batch_defaults("cpu", 0) == (128, 2048)


def test_smaller_max_num_seqs_leaves_more_kv():
    args = dict(config=load("Qwen3-30B-A3B"), gpus=RTX6000_1X)
    assert vram.plan(max_num_seqs=64, **args)["kv_tokens"] > vram.plan(**args)["kv_tokens"]


def test_weights_that_do_not_fit():
    result = vram.plan(config=load("Llama-3.1-70B-Instruct"), gpus=L40S_4X, tensor_parallel_size=1, max_model_len=8192)
    assert not result["fits"]
    assert result["reasons"][0].startswith("no memory left for the KV cache: weights 131.42 GiB per GPU")
    descriptions = [a["description"] for a in result["alternatives"]]
    # TP 2 still does not hold 65.7 GiB per GPU: the first larger size that fits is 4.
    assert descriptions[0] == "tensor_parallel_size 4"
    assert any("AWQ" in d for d in descriptions)
    awq = next(a for a in result["alternatives"] if "AWQ" in a["description"])
    assert awq["tensor_parallel_size"] == 2
    assert all(a["tensor_parallel_size"] * a["pipeline_parallel_size"] <= 4 for a in result["alternatives"])


def test_explicit_kv_cache_memory_bytes_on_gpu():
    args = dict(config=load("Llama-3.1-8B-Instruct"), gpus=L40S_4X[:1], max_model_len=8192)
    ok = vram.plan(kv_cache_memory_bytes=20 * GiB, **args)
    assert ok["fits"] and ok["kv_cache_bytes"] <= 20 * GiB and ok["budget_bytes"] is None
    too_much = vram.plan(kv_cache_memory_bytes=40 * GiB, **args)
    assert not too_much["fits"] and "exceed the GPU's usable" in too_much["reasons"][0]


def test_cuda_graph_headroom_warning():
    result = vram.plan(config=load("SmolLM2-135M-Instruct"), gpus=RTX3090_8X[:1], gpu_memory_utilization=0.98)
    assert any("CUDA graphs" in r for r in result["reasons"])
    eager = vram.plan(
        config=load("SmolLM2-135M-Instruct"), gpus=RTX3090_8X[:1], gpu_memory_utilization=0.98, enforce_eager=True
    )
    assert not any("CUDA graphs" in r for r in eager["reasons"])


def test_alternatives_are_real_plans():
    result = vram.plan(config=load("Llama-3.1-70B-Instruct"), gpus=RTX3090_8X, tensor_parallel_size=8)
    assert not result["fits"]
    alternatives = result["alternatives"]
    assert 2 <= len(alternatives) <= 3
    for alt in alternatives:
        settings = {k: v for k, v in alt["settings"].items() if k != "quantization"}
        args = dict(config=load("Llama-3.1-70B-Instruct"), gpus=RTX3090_8X, tensor_parallel_size=8)
        args.update(settings)
        if "quantization" in alt["settings"]:
            args["quantization"] = vram.AWQ_4BIT
        again = vram.plan(with_alternatives=False, **args)
        assert again["fits"] and again["kv_tokens"] == alt["kv_tokens"]
    assert alternatives[0]["settings"] == {"kv_cache_dtype": "fp8"}
    message = vram.no_fit_message(result)
    assert "does not fit with tensor_parallel_size 8" in message and "1) fp8 KV cache" in message


def test_bad_tensor_parallel_size_names_heads_and_valid_sizes():
    with pytest.raises(VramError) as err:
        vram.plan(config=load("Llama-3.1-8B-Instruct"), gpus=RTX3090_8X, tensor_parallel_size=3)
    message = str(err.value)
    assert "32 attention heads, 8 KV heads" in message
    assert "Valid sizes up to 8: 1, 2, 4, 8" in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"gpus": None}, "no GPU memory known"),
        ({"dtype": "int4"}, "unknown dtype"),
        ({"kv_cache_dtype": "fp4"}, "unknown kv_cache_dtype"),
        ({"max_model_len": "long"}, "max_model_len must be a number or auto"),
        ({"max_model_len": 0}, "max_model_len must be at least 1"),
        ({"tensor_parallel_size": "many"}, "tensor_parallel_size must be a number or auto"),
        ({"pipeline_parallel_size": 0}, "pipeline_parallel_size must be at least 1"),
        ({"pipeline_parallel_size": 99}, "exceeds the model's 32 layers"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in"),
        ({"gpu_indices": [9]}, "gpu_indices .9. are not among the GPUs"),
        ({"gpus": [{"index": 0}]}, "has no memory_total_mib"),
        ({"device": "tpu"}, "device must be cuda or cpu"),
        ({"kv_cache_memory_bytes": -1}, "kv_cache_memory_bytes must be positive"),
        ({"kv_cache_dtype": "fp8_ds_mla"}, "only for MLA models"),
    ],
)
def test_bad_input(args, message):
    base = dict(config=load("Llama-3.1-8B-Instruct"), gpus=RTX3090_8X)
    base.update(args)
    with pytest.raises(VramError, match=message):
        vram.plan(**base)


def test_config_without_sizes():
    with pytest.raises(VramError, match="config has no num_hidden_layers, hidden_size"):
        vram.plan(config={"architectures": ["X"], "num_attention_heads": 4}, gpu_memory_bytes=GiB)
    with pytest.raises(VramError, match="give model_path"):
        vram.plan(gpu_memory_bytes=GiB)


# --- the documented tables -----------------------------------------------------------------------------------------

DOC_MODELS = [
    "SmolLM2-135M-Instruct",
    "Llama-3.1-8B-Instruct",
    "Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
    "Qwen3-8B-FP8",
    "Llama-2-13b-chat-hf",
    "Mixtral-8x7B-Instruct-v0.1",
    "Qwen3-30B-A3B",
    "Llama-3.1-70B-Instruct",
    "Qwen3-235B-A22B",
    "DeepSeek-V3",
]
DOC_BOXES = [
    ("2 x L40S 48 GB", L40S_4X[:2], None),
    ("8 x RTX 3090 24 GB", RTX3090_8X, RTX3090_TOPOLOGY),
    ("1 x 96 GB (RTX PRO 6000)", RTX6000_1X, None),
    ("8 x H100 80 GB", H100_8X, H100_TOPOLOGY),
]
DOC_CONTEXT = 32768


def short_tokens(n):
    return f"{n / 1000:,.0f}k" if n >= 10000 else f"{n:,}"


def fixtures_table():
    lines = [
        "| model | params total / active | weights | KV bytes/token | "
        + " | ".join(box[0] for box in DOC_BOXES)
        + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _box in DOC_BOXES) + " |",
    ]
    for name in DOC_MODELS:
        config = load(name)
        cells = []
        first = None
        for _label, gpus, topology in DOC_BOXES:
            model_max = vram.describe_model(config)["max_model_len"]
            result = vram.plan(
                config=config,
                name=name,
                gpus=gpus,
                topology=topology,
                tensor_parallel_size="auto",
                max_model_len=min(DOC_CONTEXT, model_max),
                with_alternatives=False,
            )
            first = first or result
            if result["fits"]:
                cells.append(f"TP {result['tensor_parallel_size']}: {short_tokens(result['kv_tokens'])} tokens")
            else:
                cells.append("no")
        m = first["model"]
        params = f"{m['total_params'] / 1e9:.2f}B"
        params += f" / {m['active_params'] / 1e9:.2f}B" if m["moe"] else ""
        quant = f" ({m['quantization']})" if m["quantization"] else ""
        lines.append(
            f"| {name} | {params} | {first['weight_bytes'] / GiB:.1f} GiB{quant} | {first['kv_bytes_per_token']:,} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


SEED_CASES = [
    (
        "4x L40S, GPUs 0-1: Llama-2-13B-chat, TP auto, max_model_len 4096",
        dict(config="Llama-2-13b-chat-hf", gpus=L40S_4X, gpu_indices=[0, 1], tensor_parallel_size="auto"),
    ),
    (
        "4x L40S, GPUs 2-3: Llama-3.1-8B-Instruct, TP auto, max_model_len 32768",
        dict(
            config="Llama-3.1-8B-Instruct",
            gpus=L40S_4X,
            gpu_indices=[2, 3],
            tensor_parallel_size="auto",
            max_model_len=32768,
        ),
    ),
    (
        "8x RTX 3090: Llama-3.1-70B-Instruct bf16, TP 8, max_model_len 131072",
        dict(config="Llama-3.1-70B-Instruct", gpus=RTX3090_8X, topology=RTX3090_TOPOLOGY, tensor_parallel_size=8),
    ),
    (
        "8x RTX 3090: Llama-3.1-70B-Instruct bf16, TP 8, max_model_len auto",
        dict(
            config="Llama-3.1-70B-Instruct",
            gpus=RTX3090_8X,
            topology=RTX3090_TOPOLOGY,
            tensor_parallel_size=8,
            max_model_len="auto",
        ),
    ),
    (
        "8x RTX 3090: Llama-3.1-70B-Instruct, AWQ 4-bit estimate, TP 8, max_model_len 131072",
        dict(
            config="Llama-3.1-70B-Instruct",
            gpus=RTX3090_8X,
            topology=RTX3090_TOPOLOGY,
            tensor_parallel_size=8,
            quantization=vram.AWQ_4BIT,
        ),
    ),
    (
        "1x 96 GB: Qwen3-30B-A3B bf16, max_model_len 40960",
        dict(config="Qwen3-30B-A3B", gpus=RTX6000_1X),
    ),
]


def seed_table():
    lines = [
        "| configuration | fits | TP x PP | weights per GPU | reserve per GPU | KV cache per GPU | KV tokens | "
        "max_model_len | concurrency |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for label, case in SEED_CASES:
        args = dict(case)
        args["name"] = args["config"]
        args["config"] = load(args["config"])
        result = vram.plan(**args)
        fits = "yes" if result["fits"] else "**no**"
        lines.append(
            f"| {label} | {fits} | {result['tensor_parallel_size']} x {result['pipeline_parallel_size']} | "
            f"{vram.gib(result['weight_bytes_per_gpu'])} | {vram.gib(result['reserve_bytes'])} | "
            f"{vram.gib(result['kv_cache_bytes'])} | {result['kv_tokens']:,} | {result['max_model_len']:,} | "
            f"{result['max_concurrency']}x |"
        )
        if not result["fits"]:
            notes.append(f"- {label}: {vram.no_fit_message(result)}")
    return "\n".join(lines + (["", *notes] if notes else []))


def replace_block(text, marker, body):
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    assert pattern.search(text), f"docs/planner.md has no {marker} block"
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def test_docs_tables_are_current():
    with open(DOC) as handle:
        text = handle.read()
    updated = replace_block(replace_block(text, "fixtures-table", fixtures_table()), "seed-table", seed_table())
    if os.environ.get("UPDATE_PLANNER_DOCS"):
        with open(DOC, "w") as handle:
            handle.write(updated)
        return
    assert updated == text, "docs/planner.md tables are out of date: rerun with UPDATE_PLANNER_DOCS=1"
