# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later
"""VRAM arithmetic for vLLM: the single place in the collection that sizes weights and KV caches.

Pure and stdlib only. The caller reads nothing from a GPU; everything comes from a Hugging Face
model folder (``config.json`` and the safetensors headers, never tensor data) or from a config dict,
plus the GPU memory sizes (``gpubox_gpus`` facts).

What vLLM does, and what this module mirrors (vLLM V1, ``vllm/v1/core/kv_cache_utils.py``):

* page size per layer = ``block_size * bytes per token per layer``; the bytes per token per layer are
  ``2 * kv_heads_per_gpu * head_dim * dtype`` (K and V), or ``(kv_lora_rank + qk_rope_head_dim) * dtype``
  for MLA (DeepSeek V2/V3: one latent vector, no K/V split, replicated on every TP rank);
* ``num_blocks = available // page_size // num_layers`` per worker, then the minimum over workers;
* the log line ``KV cache size: N tokens`` prints ``num_blocks * block_size`` (vLLM 0.32 prints
  ``int(num_blocks / cdiv(max_model_len, block_size) * max_model_len)``, the same number when
  ``max_model_len`` is a multiple of the block size; both are returned);
* a ``max_model_len`` fits when ``cdiv(max_model_len, block_size)`` blocks fit beside the one null block the
  block pool always holds back (``check_enough_kv_cache_memory``: ``available - one block >= needed``), that
  is ``cdiv(max_model_len, block_size) <= num_blocks - 1``; ``auto`` picks the largest length that fits one
  sequence, ``(num_blocks - 1) * block_size`` at most;
* "Maximum concurrency" is ``num_blocks / cdiv(max_model_len, block_size)``.

The available KV memory per GPU is ``total * gpu_memory_utilization - weights - activation peak -
non-torch memory`` (``gpu_worker.determine_available_memory``), or ``kv_cache_memory_bytes`` when given.
On the CPU backend an explicit size (``--kv-cache-memory-bytes`` or ``VLLM_CPU_KVCACHE_SPACE`` GiB) is used
as is (``cpu_worker.determine_available_memory``) and the default block size is 128.

Constants that are estimates (activation peak, non-torch memory, CUDA graphs) are named below with
their sources; ``docs/planner.md`` explains them.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct

KiB = 1024
MiB = 1024**2
GiB = 1024**3

# --- Estimated constants (see docs/planner.md) ---------------------------------------------------
# Peak activation of vLLM's profiling run is dominated by the sampler's dummy run on
# min(max_num_seqs, max_num_batched_tokens) rows of vocabulary-sized float32 tensors (logits, probs,
# sorted values and int64 indices). Fitted to vLLM's own "peak activation" log figures on an H100
# (max_num_seqs 1024) collected by llm-d (config_explorer/empirical-vllm-memory-results.md):
# Llama-3.1-8B 4.76 GiB, Llama-3.3-70B TP2 4.84, Qwen3-0.6B 5.56, Qwen3-32B 5.64, gpt-oss-20b 7.38.
# 39 bytes x vocab x 1024 rows gives 4.77 / 4.77 / 5.65 / 5.65 / 7.48 GiB for those models.
SAMPLER_BYTES_PER_LOGIT = 39
# The forward pass of the profiling run on max_num_batched_tokens tokens: about four hidden-size
# activations per token plus the MLP (or fused-MoE) intermediates, in the serving dtype. It rarely
# exceeds the sampler figure; the larger of the two is used.
FORWARD_HIDDEN_COPIES = 4
# Memory outside torch's allocator (CUDA context is excluded by vLLM; this is NCCL, cuBLAS workspaces):
# llm-d measured 0.13-0.14 GiB at TP 1 and 0.55 GiB at TP 2 (same source).
NON_TORCH_BYTES_SINGLE = int(0.15 * GiB)
NON_TORCH_BYTES_MULTI = int(0.6 * GiB)
# CUDA graphs are captured after the KV cache is allocated, outside the gpu_memory_utilization budget:
# llm-d saw -0.45 to +1.03 GiB. The planner checks that the headroom (1 - utilization) holds this
# much, and counts it when kv_cache_memory_bytes replaces the budget.
CUDA_GRAPH_BYTES = 1 * GiB
# nvidia-smi's memory.total includes memory the driver keeps; CUDA (torch.cuda.mem_get_info, which vLLM
# uses) reports less: RTX 3090 24576 MiB vs 23.70 GiB, L40S 46068 MiB vs 44.42 GiB, H100 81559 MiB vs
# 79.18 GiB (0.6-1.3%). The planner takes 1.3% off the nvidia-smi figure.
DRIVER_RESERVED_FRACTION = 0.013
# CPU backend: resident memory of a worker before weights (torch runtime, warm-up), for the automatic
# KV size only (an explicit size is exact). About 0.8 GB observed with vLLM 0.30 CPU.
CPU_WORKER_BASE_BYTES = 1 * GiB
# With max_model_len: auto, a plan only counts as fitting when at least this many tokens (or the
# model's whole context if shorter) fit; vLLM itself would start with any length >= 1.
AUTO_MIN_MODEL_LEN = 4096

# vLLM's batch defaults (vllm/engine/arg_utils.py get_batch_defaults, OpenAI API server context).
LARGE_GPU_BYTES = 70 * GiB
HUGE_GPU_BYTES = 160 * GiB
CPU_DEFAULT_MAX_NUM_SEQS = 128
CPU_DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048

DEFAULT_BLOCK_SIZE = {"cuda": 16, "cpu": 128}
# MLA models: FlashMLA (vLLM's default MLA backend on Hopper/Blackwell) uses 64; the CPU MLA kernel 16.
MLA_BLOCK_SIZE = {"cuda": 64, "cpu": 16}

# --- dtypes ----------------------------------------------------------------------------------------
DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "fp32": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "half": 2,
    "fp16": 2,
}
KV_CACHE_DTYPE_BYTES = {
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fp8_inc": 1,
    "fp8_ds_mla": 1,
    "int8": 1,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float32": 4,
}
# DeepSeek's sparse-attention fp8 MLA cache stores 656 bytes per token and layer (vLLM FlashMLA sparse).
FP8_DS_MLA_BYTES_PER_TOKEN = 656

# Bits per element of the safetensors dtypes.
SAFETENSORS_DTYPE_BITS = {
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F32": 32,
    "I32": 32,
    "U32": 32,
    "F16": 16,
    "BF16": 16,
    "I16": 16,
    "U16": 16,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I8": 8,
    "U8": 8,
    "BOOL": 8,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "F4": 4,
}
FLOAT_DTYPES = frozenset(("F64", "F32", "F16", "BF16"))
MAX_HEADER_BYTES = 100 * MiB

# Model types whose MLP has two matrices (no gate); everything else is treated as gated (3 matrices).
UNGATED_MLP_TYPES = frozenset(
    ("gpt2", "gpt_neox", "gptj", "opt", "falcon", "bloom", "phi", "gpt_bigcode", "starcoder2", "mpt", "bert")
)
TIED_BY_DEFAULT_TYPES = frozenset(("gpt2", "opt", "bloom", "gpt_bigcode", "bert", "gemma", "gemma2", "gemma3_text"))
BIASED_QKV_TYPES = frozenset(("qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"))
NESTED_TEXT_KEYS = ("text_config", "llm_config", "language_config", "thinker_config")
ATTENTION_LAYER_TYPES = frozenset(("full_attention", "sliding_attention", "attention", "chunked_attention"))

# Tensor-name classification for safetensors checkpoints.
LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)(?:\.|$)")
EMBED_RE = re.compile(r"(?:^|\.)(?:embed_tokens|wte|word_embeddings|tok_embeddings|embed_in)(?:\.|$)")
HEAD_RE = re.compile(r"(?:^|\.)(?:lm_head|embed_out)(?:\.|$)")
ENCODER_RE = re.compile(
    r"(?:^|\.)(?:visual|vision_tower|vision_model|vision_encoder|audio_tower|mm_projector|"
    r"multi_modal_projector|vit|image_newline|audio_encoder)(?:\.|$)"
)
# Replicated on every tensor-parallel rank: norms, MoE routers, DeepSeek's low-rank "a" projections.
REPLICATED_RE = re.compile(
    r"(?:norm|\.mlp\.gate\.|\.router\.|e_score_correction_bias|q_a_proj|kv_a_proj_with_mqa|shared_expert_gate\.)"
)
KV_PROJ_RE = re.compile(r"\.(?:k_proj|v_proj)\.")


class VramError(ValueError):
    """Bad input, with a message meant for the user."""


def gib(value):
    """Bytes as a short GiB string."""
    return f"{value / GiB:.2f} GiB"


def cdiv(a, b):
    return -(-a // b)


# ---------------------------------------------------------------------------------------------------
# Reading a model folder
# ---------------------------------------------------------------------------------------------------


def read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise VramError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise VramError(f"{path} is not valid JSON: {exc}") from exc


def read_safetensors_header(path):
    """The tensors of one safetensors file: ``{name: {"dtype", "shape", "nbytes", "numel"}}``.

    Reads the 8-byte little-endian header length and the JSON header only, never tensor data.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise VramError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
            (length,) = struct.unpack("<Q", raw)
            if length <= 1 or length > MAX_HEADER_BYTES:
                raise VramError(f"{path} is not a safetensors file (header length {length})")
            header = handle.read(length)
    except OSError as exc:
        raise VramError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(header) != length:
        raise VramError(f"{path} is truncated: its header says {length} bytes")
    try:
        data = json.loads(header.decode("utf-8"))
    except ValueError as exc:
        raise VramError(f"{path} has a safetensors header that is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise VramError(f"{path} has a safetensors header that is not a JSON object")
    tensors = {}
    for name, entry in data.items():
        if name == "__metadata__":
            continue
        try:
            dtype = entry["dtype"]
            shape = [int(d) for d in entry["shape"]]
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VramError(f"{path}: tensor {name} has no valid dtype/shape/data_offsets") from exc
        numel = math.prod(shape)
        bits = SAFETENSORS_DTYPE_BITS.get(dtype)
        if bits is not None and cdiv(numel * bits, 8) != end - start:
            raise VramError(
                f"{path}: tensor {name} ({dtype} {shape}) spans {end - start} bytes, expected {cdiv(numel * bits, 8)}"
            )
        tensors[name] = {"dtype": dtype, "shape": shape, "nbytes": end - start, "numel": numel}
    return tensors


def safetensors_files(folder):
    """The safetensors files vLLM would load from ``folder`` (from the index when there is one)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise VramError(f"{index} has no weight_map")
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise VramError(
                f"{folder}: shards listed in model.safetensors.index.json are missing: {', '.join(missing)}"
            )
        return [os.path.join(folder, f) for f in files]
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return [os.path.join(folder, "model.safetensors")]
    names = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    # Mistral repositories ship consolidated*.safetensors beside the HF shards; vLLM loads one format.
    hf = [n for n in names if not n.startswith("consolidated")]
    return [os.path.join(folder, n) for n in (hf or names)]


def read_model_folder(path):
    """``{"config", "tensors", "files", "checkpoint_bytes"}`` of a local Hugging Face model folder.

    ``tensors`` is None when the folder holds no safetensors (weights are then estimated from the config).
    A quantization config kept in a side file (quantize_config.json, quant_config.json, hf_quant_config.json)
    is merged in as ``quantization_config``.
    """
    if not os.path.isdir(path):
        raise VramError(f"model folder {path} does not exist")
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise VramError(f"{path} has no config.json, so it is not a Hugging Face model folder")
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise VramError(f"{config_path} is not a JSON object")
    if "quantization_config" not in config:
        for side in ("quantize_config.json", "quant_config.json", "hf_quant_config.json"):
            side_path = os.path.join(path, side)
            if os.path.isfile(side_path):
                quant = read_json(side_path)
                quant = quant.get("quantization", quant) if isinstance(quant, dict) else quant
                if isinstance(quant, dict):
                    config = dict(config, quantization_config=quant)
                break
    files = safetensors_files(path)
    tensors = None
    total = 0
    if files:
        tensors = {}
        for file in files:
            for name, entry in read_safetensors_header(file).items():
                tensors[name] = entry
                total += entry["nbytes"]
    return {
        "config": config,
        "tensors": tensors,
        "files": [os.path.basename(f) for f in files],
        "checkpoint_bytes": total,
    }


# ---------------------------------------------------------------------------------------------------
# Model description
# ---------------------------------------------------------------------------------------------------


def text_config(config):
    """The language model's config: nested ``text_config`` (multimodal wrappers) merged over the top level."""
    for key in NESTED_TEXT_KEYS:
        nested = config.get(key)
        if isinstance(nested, dict) and nested.get("num_hidden_layers"):
            merged = {k: v for k, v in config.items() if k not in NESTED_TEXT_KEYS}
            merged.update({k: v for k, v in nested.items() if v is not None})
            merged.setdefault("architectures", config.get("architectures"))
            return merged
    return config


def first(config, *keys, default=None):
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    return default


def parse_quantization(config):
    """``{"method", "bits", "group_size", "block", "bytes_per_param"}`` for the linear weights, or None."""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method") or quant.get("quant_algo") or "").lower()
    bits = quant.get("bits") or quant.get("w_bit")
    group = quant.get("group_size") or quant.get("q_group_size") or 128
    out = {"method": method, "bits": None, "group_size": None, "block": None}
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin", "auto-round", "autoround"):
        bits = int(bits or 4)
        group = int(group)
        per_group = (2 + bits / 8) / group if group > 0 else 0  # fp16 scale + packed zero per group
        out.update(bits=bits, group_size=group, bytes_per_param=bits / 8 + per_group)
    elif method in ("fp8", "fbgemm_fp8", "ptpc_fp8"):
        block = quant.get("weight_block_size")
        per_block = 4 / (block[0] * block[1]) if block else 0  # one float32 scale per block
        out.update(bits=8, block=list(block) if block else None, bytes_per_param=1 + per_block)
    elif method == "compressed-tensors":
        weights = {}
        for group_cfg in (quant.get("config_groups") or {}).values():
            weights = (group_cfg or {}).get("weights") or {}
            if weights:
                break
        bits = int(weights.get("num_bits") or 8)
        group = weights.get("group_size")
        per_group = 2 / group if (weights.get("strategy") == "group" and group) else 0
        block = weights.get("block_structure")
        out.update(bits=bits, group_size=group, block=block, bytes_per_param=bits / 8 + per_group)
    elif method in ("modelopt", "fp8_modelopt", "nvfp4") or "fp8" in method or "fp4" in method:
        algo = str(quant.get("quant_algo") or method).upper()
        if "FP4" in algo:
            out.update(bits=4, bytes_per_param=0.5 + 1 / 16)  # fp8 scale per 16 elements
        else:
            out.update(bits=8, bytes_per_param=1.0)
    elif method == "mxfp4":
        out.update(bits=4, bytes_per_param=4.25 / 8)
    elif method == "bitsandbytes":
        if quant.get("load_in_4bit"):
            out.update(bits=4, bytes_per_param=0.5 + 1 / 64)
        else:
            out.update(bits=8, bytes_per_param=1.0 + 4 / 4096)
    else:
        bits = int(bits or 8)
        out.update(bits=bits, bytes_per_param=bits / 8)
    return out


def derived_max_model_len(cfg):
    """vLLM's ``_get_and_verify_max_len``: the smallest length key, scaled by rope scaling when it applies."""
    keys = (
        "max_position_embeddings",
        "n_positions",
        "max_seq_len",
        "seq_length",
        "max_sequence_length",
        "max_seq_length",
        "seq_len",
    )
    lengths = [int(cfg[k]) for k in keys if isinstance(cfg.get(k), (int, float)) and cfg[k] > 0]
    derived = min(lengths) if lengths else 2048
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if isinstance(rope, dict):
        rope_type = rope.get("rope_type") or rope.get("type") or "default"
        if rope_type not in ("su", "longrope", "llama3", "default", "mrope"):
            factor = float(rope.get("factor") or 1)
            if rope_type == "yarn" and rope.get("original_max_position_embeddings"):
                derived = int(rope["original_max_position_embeddings"])
            derived = int(derived * factor)
    return derived


def describe_model(config, name=None):
    """Normalize a config.json into the figures the arithmetic needs."""
    if not isinstance(config, dict):
        raise VramError("config must be a dict (the contents of config.json)")
    cfg = text_config(config)
    arch = (config.get("architectures") or cfg.get("architectures") or ["unknown"])[0]
    model_type = str(cfg.get("model_type") or config.get("model_type") or "")
    layers = first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    hidden = first(cfg, "hidden_size", "n_embd", "d_model")
    heads = first(cfg, "num_attention_heads", "n_head", "num_heads")
    missing = [
        k for k, v in (("num_hidden_layers", layers), ("hidden_size", hidden), ("num_attention_heads", heads)) if not v
    ]
    if missing:
        raise VramError(f"config has no {', '.join(missing)}: cannot size the model {name or arch}")
    layers, hidden, heads = int(layers), int(hidden), int(heads)
    kv_heads = first(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
    if kv_heads is None:
        kv_heads = 1 if cfg.get("multi_query") else heads
    head_dim = cfg.get("head_dim") or hidden // heads
    vocab = int(first(cfg, "vocab_size", "padded_vocab_size", default=32000))
    intermediate = int(first(cfg, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", default=4 * hidden))
    mla = None
    if cfg.get("kv_lora_rank"):
        mla = {
            "kv_lora_rank": int(cfg["kv_lora_rank"]),
            "qk_rope_head_dim": int(cfg.get("qk_rope_head_dim") or 64),
            "qk_nope_head_dim": int(cfg.get("qk_nope_head_dim") or 128),
            "v_head_dim": int(cfg.get("v_head_dim") or 128),
            "q_lora_rank": int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None,
        }
    experts = int(first(cfg, "num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts", default=0) or 0)
    moe = None
    if experts > 1:
        moe_inter = int(first(cfg, "moe_intermediate_size", "expert_intermediate_size", default=intermediate))
        shared = 0
        if cfg.get("n_shared_experts"):
            shared = int(cfg["n_shared_experts"]) * moe_inter
        elif cfg.get("shared_expert_intermediate_size"):
            shared = int(cfg["shared_expert_intermediate_size"])
        moe = {
            "experts": experts,
            "top_k": int(first(cfg, "num_experts_per_tok", "moe_topk", "num_experts_per_token", "top_k", default=2)),
            "intermediate_size": moe_inter,
            "shared_intermediate_size": shared,
            "shared_gate": bool(cfg.get("shared_expert_intermediate_size")),
            "first_k_dense_replace": int(cfg.get("first_k_dense_replace") or 0),
            "moe_layer_freq": int(cfg.get("moe_layer_freq") or 1),
            "decoder_sparse_step": int(cfg.get("decoder_sparse_step") or 1),
            "mlp_only_layers": list(cfg.get("mlp_only_layers") or []),
        }
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == layers:
        kv_layers = [i for i, t in enumerate(layer_types) if t in ATTENTION_LAYER_TYPES]
    else:
        kv_layers = list(range(layers))
    tie = cfg.get("tie_word_embeddings", config.get("tie_word_embeddings"))
    if tie is None:
        tie = model_type in TIED_BY_DEFAULT_TYPES
    dtype = first(config, "torch_dtype", "dtype") or first(cfg, "torch_dtype", "dtype") or "bfloat16"
    dtype = str(dtype).replace("torch.", "")
    return {
        "name": name or config.get("_name_or_path") or arch,
        "architecture": arch,
        "model_type": model_type,
        "num_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": int(kv_heads),
        "head_dim": int(head_dim),
        "vocab_size": vocab,
        "intermediate_size": intermediate,
        "mla": mla,
        "moe": moe,
        "kv_layers": kv_layers,
        "tie_word_embeddings": bool(tie),
        "gated_mlp": model_type not in UNGATED_MLP_TYPES,
        "qkv_bias": bool(cfg.get("attention_bias")) or model_type in BIASED_QKV_TYPES,
        "dtype": dtype,
        "quantization": parse_quantization(config) or parse_quantization(cfg),
        "max_model_len": derived_max_model_len(cfg),
    }


def is_moe_layer(model, index):
    moe = model["moe"]
    if not moe:
        return False
    if index < moe["first_k_dense_replace"] or index in moe["mlp_only_layers"]:
        return False
    if (index - moe["first_k_dense_replace"]) % moe["moe_layer_freq"]:
        return False
    return (index + 1) % moe["decoder_sparse_step"] == 0


def estimate_layer_params(model, index):
    """Parameters of decoder layer ``index``, by role.

    ``linear``: quantizable matrices split across TP ranks; ``linear_replicated``: quantizable matrices every
    rank holds (MLA "a" projections); ``kv_proj``: the K/V projections (replicated when TP > KV heads);
    ``plain``: norms and routers (kept in the model dtype, replicated); ``bias``: biases (split);
    ``active``: parameters used per token.
    """
    h, a, k, d = model["hidden_size"], model["num_attention_heads"], model["num_kv_heads"], model["head_dim"]
    parts = {"linear": 0, "linear_replicated": 0, "kv_proj": 0, "plain": 2 * h, "bias": 0, "active": 0}
    mla = model["mla"]
    if mla:
        qk = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
        if mla["q_lora_rank"]:
            parts["linear_replicated"] += h * mla["q_lora_rank"]
            parts["plain"] += mla["q_lora_rank"]
            parts["linear"] += mla["q_lora_rank"] * a * qk
        else:
            parts["linear"] += h * a * qk
        parts["linear_replicated"] += h * (mla["kv_lora_rank"] + mla["qk_rope_head_dim"])
        parts["plain"] += mla["kv_lora_rank"]
        parts["linear"] += mla["kv_lora_rank"] * a * (mla["qk_nope_head_dim"] + mla["v_head_dim"])
        parts["linear"] += a * mla["v_head_dim"] * h
    else:
        parts["linear"] += 2 * h * a * d  # q and o
        parts["kv_proj"] += 2 * h * k * d
        if model["qkv_bias"]:
            parts["bias"] += a * d + 2 * k * d
    attention = parts["linear"] + parts["linear_replicated"] + parts["kv_proj"] + parts["bias"]
    mats = 3 if model["gated_mlp"] else 2
    moe = model["moe"]
    if is_moe_layer(model, index):
        expert = mats * h * moe["intermediate_size"]
        shared = mats * h * moe["shared_intermediate_size"]
        router = h * moe["experts"] + (h if moe["shared_gate"] else 0)
        parts["linear"] += moe["experts"] * expert + shared
        parts["plain"] += router
        parts["active"] = attention + moe["top_k"] * expert + shared + parts["plain"]
    else:
        mlp = mats * h * model["intermediate_size"]
        parts["linear"] += mlp
        parts["active"] = attention + mlp + parts["plain"]
    return parts


def estimate_parameters(model):
    """Total and active parameter counts from the config, with the embedding and head split out."""
    layers = [estimate_layer_params(model, i) for i in range(model["num_layers"])]
    embed = model["vocab_size"] * model["hidden_size"]
    head = 0 if model["tie_word_embeddings"] else embed
    layer_total = sum(p["linear"] + p["linear_replicated"] + p["kv_proj"] + p["plain"] + p["bias"] for p in layers)
    final_norm = model["hidden_size"]
    total = embed + head + layer_total + final_norm
    active = embed + head + sum(p["active"] for p in layers) + final_norm
    return {"total": total, "active": active, "embedding": embed, "lm_head": head, "layers": layers}


def serving_dtype(model, dtype="auto"):
    """(name, bytes) of the dtype vLLM computes in. ``auto`` is the checkpoint dtype; a float32 checkpoint
    is served in bfloat16 (vLLM downcasts float32 unless asked for it)."""
    dtype = (dtype or "auto").lower()
    if dtype == "auto":
        dtype = model["dtype"].lower()
        if DTYPE_BYTES.get(dtype) == 4 or dtype not in DTYPE_BYTES:
            dtype = "bfloat16"
    if dtype not in DTYPE_BYTES:
        raise VramError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32")
    return dtype, DTYPE_BYTES[dtype]


def estimate_weights(model, dtype_bytes, quantization=None):
    """Weight bytes by placement, estimated from the config (for folders without safetensors)."""
    quant = quantization if quantization is not None else model["quantization"]
    linear_bytes = quant["bytes_per_param"] if quant else dtype_bytes
    params = estimate_parameters(model)
    layers = []
    for p in params["layers"]:
        layers.append(
            {
                "sharded": p["linear"] * linear_bytes + p["bias"] * dtype_bytes,
                "replicated": p["linear_replicated"] * linear_bytes + p["plain"] * dtype_bytes,
                "kv_proj": p["kv_proj"] * linear_bytes,
            }
        )
    return {
        "embedding": params["embedding"] * dtype_bytes,
        "lm_head": params["lm_head"] * dtype_bytes,
        "encoder": 0,
        "other": model["hidden_size"] * dtype_bytes,
        "layers": layers,
        "skipped": 0,
        "source": "estimated from config.json" + (f" ({quant['method']} {quant['bits']}-bit)" if quant else ""),
    }


def weights_from_tensors(model, tensors, dtype_bytes):
    """Weight bytes by placement, exact from the safetensors headers.

    Floating-point tensors of an unquantized checkpoint are counted at the serving dtype (vLLM casts them);
    a quantized checkpoint is counted as stored. Layers past ``num_hidden_layers`` (DeepSeek's multi-token
    prediction layer) are not loaded by vLLM without speculative decoding and are counted as skipped.
    """
    quantized = model["quantization"] is not None
    out = {
        "embedding": 0,
        "lm_head": 0,
        "encoder": 0,
        "other": 0,
        "skipped": 0,
        "source": "safetensors headers",
        "layers": [{"sharded": 0, "replicated": 0, "kv_proj": 0} for _layer in range(model["num_layers"])],
    }
    for name, entry in tensors.items():
        size = entry["nbytes"]
        if not quantized and entry["dtype"] in FLOAT_DTYPES:
            size = entry["numel"] * dtype_bytes
        if ENCODER_RE.search(name):
            out["encoder"] += size
            continue
        match = LAYER_RE.search(name)
        if match:
            index = int(match.group(1))
            if index >= model["num_layers"]:
                out["skipped"] += size
                continue
            layer = out["layers"][index]
            if REPLICATED_RE.search(name):
                layer["replicated"] += size
            elif not model["mla"] and KV_PROJ_RE.search(name):
                layer["kv_proj"] += size
            else:
                layer["sharded"] += size
        elif EMBED_RE.search(name):
            out["embedding"] += size
        elif HEAD_RE.search(name):
            out["lm_head"] += size
        else:
            out["other"] += size
    return out


def scale_weights(weights, total):
    """Scale an estimated breakdown so that it sums to a known total (``weight_bytes`` given by the user)."""
    current = weights_total(weights)
    if current <= 0:
        return weights
    f = total / current
    out = {k: (v * f if isinstance(v, (int, float)) and k != "skipped" else v) for k, v in weights.items()}
    out["layers"] = [{k: v * f for k, v in layer.items()} for layer in weights["layers"]]
    out["source"] = "weight_bytes given, split like the config estimate"
    return out


def weights_total(weights):
    layers = sum(sum(layer.values()) for layer in weights["layers"])
    return int(weights["embedding"] + weights["lm_head"] + weights["encoder"] + weights["other"] + layers)


# ---------------------------------------------------------------------------------------------------
# KV cache and parallelism
# ---------------------------------------------------------------------------------------------------


def kv_cache_dtype_bytes(model, kv_cache_dtype, dtype_bytes, device="cuda"):
    """(name, bytes per element) of the KV cache. ``auto`` follows the serving dtype; the CPU backend
    falls back to ``auto`` for quantized KV caches."""
    name = (kv_cache_dtype or "auto").lower()
    if name == "auto" or (device == "cpu" and name.startswith(("fp8", "int8"))):
        return "auto", dtype_bytes
    if name not in KV_CACHE_DTYPE_BYTES:
        raise VramError(f"unknown kv_cache_dtype {kv_cache_dtype!r}; use auto, fp8, fp8_e4m3, fp8_e5m2 or bfloat16")
    if name == "fp8_ds_mla" and not model["mla"]:
        raise VramError("kv_cache_dtype fp8_ds_mla is only for MLA models (DeepSeek)")
    return name, KV_CACHE_DTYPE_BYTES[name]


def kv_bytes_per_token_layer(model, kv_name, kv_bytes, tp=1):
    """KV bytes one token takes in one attention layer on one GPU."""
    mla = model["mla"]
    if mla:
        if kv_name == "fp8_ds_mla":
            return FP8_DS_MLA_BYTES_PER_TOKEN
        return (mla["kv_lora_rank"] + mla["qk_rope_head_dim"]) * kv_bytes
    heads = max(1, model["num_kv_heads"] // tp)
    return 2 * heads * model["head_dim"] * kv_bytes


def tp_problems(model, tp):
    """Why vLLM would refuse this tensor-parallel size (empty when it is valid)."""
    heads, kv = model["num_attention_heads"], model["num_kv_heads"]
    problems = []
    if tp < 1:
        return [f"tensor_parallel_size must be at least 1, not {tp}"]
    if heads % tp:
        problems.append(f"{heads} attention heads are not divisible by {tp}")
    if not model["mla"] and kv % tp and tp % kv:
        problems.append(f"{kv} KV heads are neither divisible by {tp} nor a divisor of it")
    quant = model["quantization"]
    block = quant.get("block") if quant else None
    if block and isinstance(block, (list, tuple)) and block[0]:
        widths = [("intermediate_size", model["intermediate_size"])]
        if model["moe"]:
            widths = [("moe_intermediate_size", model["moe"]["intermediate_size"])]
            if model["moe"]["first_k_dense_replace"] or model["moe"]["mlp_only_layers"]:
                widths.append(("intermediate_size", model["intermediate_size"]))
        for label, width in widths:
            if width % tp or (width // tp) % int(block[0]):
                problems.append(f"{label} {width} / {tp} is not a multiple of the fp8 weight block {int(block[0])}")
    return problems


def valid_tp_sizes(model, limit):
    return [tp for tp in range(1, max(1, limit) + 1) if not tp_problems(model, tp)]


def pp_layer_split(num_layers, pp):
    """vLLM's ``get_pp_indices``: equal parts, the remainder going to the stages before the last."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    bounds, start = [], 0
    for n in parts:
        bounds.append((start, start + n))
        start += n
    return bounds


def batch_defaults(device, gpu_bytes, gpu_name=""):
    """vLLM's default (max_num_seqs, max_num_batched_tokens) for ``vllm serve`` on this device."""
    if device == "cpu":
        return CPU_DEFAULT_MAX_NUM_SEQS, CPU_DEFAULT_MAX_NUM_BATCHED_TOKENS
    if gpu_bytes >= LARGE_GPU_BYTES and "a100" not in (gpu_name or "").lower():
        return 1024, 16384 if gpu_bytes >= HUGE_GPU_BYTES else 8192
    return 256, 2048


def activation_bytes(model, dtype_bytes, tp, max_num_seqs, max_num_batched_tokens):
    """Peak activation of vLLM's profiling run on one GPU (see SAMPLER_BYTES_PER_LOGIT)."""
    rows = min(max_num_seqs, max_num_batched_tokens)
    sampler = SAMPLER_BYTES_PER_LOGIT * model["vocab_size"] * rows
    h = model["hidden_size"]
    if model["moe"]:
        moe = model["moe"]
        width = moe["top_k"] * (3 * moe["intermediate_size"] // tp + h)
    else:
        width = 3 * model["intermediate_size"] // tp
    forward = max_num_batched_tokens * (FORWARD_HIDDEN_COPIES * h + width) * dtype_bytes
    return max(sampler, forward)


def stage_weight_bytes(model, weights, *, tp, bounds, stage):
    """Weight bytes one GPU of pipeline stage ``stage`` holds."""
    start, end = bounds[stage]
    pp = len(bounds)
    kv_split = min(tp, model["num_kv_heads"]) if not model["mla"] else tp
    total = 0.0
    for layer in weights["layers"][start:end]:
        total += layer["sharded"] / tp + layer["replicated"] + layer["kv_proj"] / kv_split
    if stage == 0:
        total += weights["embedding"] / tp + weights["encoder"] / tp
    if stage == pp - 1:
        head = weights["lm_head"]
        if not head and pp > 1 and model["tie_word_embeddings"]:
            head = weights["embedding"]  # the last stage keeps its own copy of a tied embedding
        total += head / tp + weights["other"]
    return math.ceil(total)


# ---------------------------------------------------------------------------------------------------
# GPUs
# ---------------------------------------------------------------------------------------------------


def nvlink_groups_of(topology, pool):
    """NVLink groups restricted to the GPUs in ``pool``; empty when no group has two GPUs."""
    groups = []
    for group in (topology or {}).get("nvlink_groups") or []:
        members = [i for i in group if i in pool]
        if members:
            groups.append(members)
    return groups if any(len(g) > 1 for g in groups) else []


def pick_gpus(gpus, tp, pp, groups):
    """GPU indices for ``pp`` stages of ``tp`` GPUs, each stage inside one NVLink group when possible.

    Returns (indices, crosses) where ``crosses`` says a stage had to span NVLink groups.
    """
    indices = [g["index"] for g in gpus]
    if not groups:
        return indices[: tp * pp], False
    free = [list(g) for g in sorted(groups, key=len)]
    chosen, crosses = [], False
    for _stage in range(pp):
        group = next((g for g in free if len(g) >= tp), None)
        if group is not None:
            chosen.extend(group[:tp])
            del group[:tp]
        else:
            crosses = True
            rest = [i for i in indices if i not in chosen]
            chosen.extend(rest[:tp])
            for g in free:
                g[:] = [i for i in g if i not in chosen]
    return chosen, crosses


# ---------------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------------


def evaluate(model, weights, *, gpus, tp, pp, settings):
    """Size one (tp, pp) layout. ``settings`` holds the resolved options (see ``plan``)."""
    s = settings
    device = s["device"]
    bounds = pp_layer_split(model["num_layers"], pp)
    groups = s["nvlink_groups"]
    indices, crosses = pick_gpus(gpus, tp, pp, groups)
    used = [g for g in gpus if g["index"] in indices] or gpus[: tp * pp]
    total_bytes = min(g["memory_bytes"] for g in used)
    usable = total_bytes if device == "cpu" else int(total_bytes * (1 - DRIVER_RESERVED_FRACTION))
    gpu_name = used[0].get("name") or ""
    seqs_default, tokens_default = batch_defaults(device, total_bytes, gpu_name)
    max_num_seqs = s["max_num_seqs"] or seqs_default
    max_num_batched_tokens = s["max_num_batched_tokens"] or tokens_default
    block_size = s["block_size"]
    per_layer = kv_bytes_per_token_layer(model, s["kv_name"], s["kv_bytes"], tp)
    page = block_size * per_layer
    kv_layer_set = set(model["kv_layers"])
    explicit = s["kv_cache_memory_bytes"]
    util = s["gpu_memory_utilization"]
    reasons = []

    if device == "cpu":
        activation = non_torch = 0
        runtime = CPU_WORKER_BASE_BYTES
    else:
        activation = activation_bytes(model, s["dtype_bytes"], tp, max_num_seqs, max_num_batched_tokens)
        non_torch = NON_TORCH_BYTES_MULTI if tp * pp > 1 else NON_TORCH_BYTES_SINGLE
        runtime = 0
    cuda_graphs = 0 if (device == "cpu" or s["enforce_eager"]) else CUDA_GRAPH_BYTES
    budget = math.ceil(usable * util) if device == "cpu" else int(usable * util)

    stages = []
    for stage in range(pp):
        start, end = bounds[stage]
        kv_layers = len([i for i in range(start, end) if i in kv_layer_set])
        w = stage_weight_bytes(model, weights, tp=tp, bounds=bounds, stage=stage)
        if explicit is not None:
            available = explicit
        else:
            available = budget - w - activation - non_torch - runtime
        blocks = int(available // page // kv_layers) if kv_layers and available > 0 else 0
        stages.append(
            {
                "layers": [start, end],
                "kv_layers": kv_layers,
                "weight_bytes": w,
                "available_kv_bytes": int(available),
                "num_blocks": max(blocks, 0),
            }
        )
    heaviest = max(stages, key=lambda st: st["weight_bytes"])
    num_blocks = min(st["num_blocks"] for st in stages)
    kv_tokens = num_blocks * block_size
    # The block pool holds one null block back: a sequence can use the others.
    usable_tokens = max(num_blocks - 1, 0) * block_size
    kv_layers_max = max(st["kv_layers"] for st in stages)
    kv_cache_bytes = num_blocks * page * kv_layers_max
    available = min(st["available_kv_bytes"] for st in stages)

    fits = True
    model_max = model["max_model_len"]
    requested = s["max_model_len"]
    if requested == "auto":
        max_model_len = min(model_max, usable_tokens)
    else:
        max_model_len = requested if requested is not None else model_max

    unit = "worker" if device == "cpu" else "GPU"
    if device == "cpu":
        where = "the CPU backend"
    else:
        where = f"{tp * pp} x {gib(total_bytes)}" + (f" ({gpu_name})" if gpu_name else "")
    if explicit is None and available <= 0:
        fits = False
        limit = f"{util:g} x {gib(usable)} = {gib(budget)}"
        reasons.append(
            f"no memory left for the KV cache: weights {gib(heaviest['weight_bytes'])} per {unit}"
            + (
                f" + activation peak {gib(activation)} + non-torch {gib(non_torch)}"
                if device != "cpu"
                else f" + worker runtime {gib(runtime)}"
            )
            + f" exceed the budget of {limit} at tensor_parallel_size {tp}, pipeline_parallel_size {pp}"
        )
    elif explicit is not None:
        need = heaviest["weight_bytes"] + activation + non_torch + cuda_graphs + explicit + runtime
        if device != "cpu" and need > usable:
            fits = False
            reasons.append(
                f"kv_cache_memory_bytes {gib(explicit)} + weights {gib(heaviest['weight_bytes'])} + activation "
                f"{gib(activation)} + non-torch {gib(non_torch)} + CUDA graphs {gib(cuda_graphs)} = {gib(need)} "
                f"exceed the GPU's usable {gib(usable)}"
            )
        elif device == "cpu" and s["host_memory_bytes"] and need > s["host_memory_bytes"]:
            fits = False
            reasons.append(
                f"kv_cache_memory_bytes {gib(explicit)} + weights {gib(heaviest['weight_bytes'])} + worker runtime "
                f"{gib(runtime)} exceed the host's {gib(s['host_memory_bytes'])}"
            )
    if fits and num_blocks <= 1:
        fits = False
        reasons.append(
            f"the KV cache memory ({gib(available)}) holds less than two blocks of {block_size} tokens "
            "(one is the block pool's null block)"
        )
    if fits and requested == "auto":
        floor = min(model_max, AUTO_MIN_MODEL_LEN)
        if usable_tokens < floor:
            fits = False
            reasons.append(
                f"max_model_len auto: one sequence can use only {usable_tokens:,} tokens of the KV cache, "
                f"less than {floor:,}"
            )
    elif fits:
        if max_model_len > model_max:
            fits = False
            reasons.append(
                f"max_model_len {max_model_len:,} is longer than the model's maximum of {model_max:,} tokens"
            )
        elif cdiv(max_model_len, block_size) > num_blocks - 1:
            fits = False
            need = (cdiv(max_model_len, block_size) + 1) * page * kv_layers_max
            reasons.append(
                f"max_model_len {max_model_len:,} needs {gib(need)} of KV cache per {unit} (with the null block) but "
                f"{gib(available)} is available: one sequence can use {usable_tokens:,} of its {kv_tokens:,} tokens"
            )
    exact_concurrency = num_blocks / cdiv(max_model_len, block_size) if max_model_len > 0 else 0.0
    concurrency = round(exact_concurrency, 2)

    if fits:
        reasons.append(
            f"fits on {where}: weights {gib(heaviest['weight_bytes'])} per {unit}, KV cache "
            f"{gib(kv_cache_bytes)} per {unit} = {kv_tokens:,} tokens, {concurrency}x max_model_len {max_model_len:,}"
        )
    if crosses:
        reasons.append(f"tensor_parallel_size {tp} spans NVLink groups {groups}: its all-reduce traffic goes over PCIe")
    if device != "cpu" and explicit is None and cuda_graphs and usable - budget < cuda_graphs:
        reasons.append(
            f"gpu_memory_utilization {util:g} leaves {gib(usable - budget)} outside the budget; CUDA graphs "
            f"(about {gib(cuda_graphs)}) are captured there: lower it or set enforce_eager"
        )
    if s["kv_requested"] != s["kv_name"] and device == "cpu":
        reasons.append(f"the CPU backend does not quantize the KV cache: {s['kv_requested']} falls back to auto")

    return {
        "fits": fits,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "gpu_indices": indices if all(isinstance(i, int) for i in indices) else [],
        "gpu_memory_bytes": total_bytes,
        "usable_memory_bytes": usable,
        "budget_bytes": int(budget) if explicit is None else None,
        "weight_bytes_per_gpu": heaviest["weight_bytes"],
        "reserve_bytes": int(activation + non_torch + runtime),
        "reserve": {
            "activation_peak_bytes": int(activation),
            "non_torch_bytes": int(non_torch),
            "cuda_graph_bytes": int(cuda_graphs),
            "cpu_worker_runtime_bytes": int(runtime),
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens,
        },
        "kv_bytes_per_token_per_gpu": per_layer * kv_layers_max,
        "kv_available_bytes": int(max(available, 0)),
        "kv_cache_bytes": int(kv_cache_bytes),
        "num_blocks": num_blocks,
        "block_size": block_size,
        "kv_tokens": kv_tokens,
        # vLLM >= 0.3x logs int(concurrency x max_model_len); the same as kv_tokens when max_model_len is a
        # multiple of the block size.
        "kv_tokens_logged": int(exact_concurrency * max_model_len),
        "max_model_len": int(max_model_len),
        "max_concurrency": concurrency,
        "stages": stages,
        "reasons": reasons,
    }


def candidate_layouts(model, n_gpus, nodes, groups):
    """(tp, pp) layouts to try for ``auto``, in order of preference."""
    per_node = max(1, n_gpus // nodes)
    if nodes > 1:
        tps = valid_tp_sizes(model, per_node)
        tp = max(tps) if tps else 1
        return [(tp, nodes)]
    powers = [p for p in (1, 2, 4, 8, 16, 32, 64) if p <= n_gpus]
    valid = [tp for tp in powers if not tp_problems(model, tp)]
    largest_group = max((len(g) for g in groups), default=n_gpus)
    inside = [tp for tp in valid if tp <= largest_group]
    across = [tp for tp in valid if tp > largest_group]
    layouts = [(tp, 1) for tp in inside + across]
    for total in powers:
        for pp in (2, 4, 8, 16):
            tp = total // pp
            if tp >= 1 and total % pp == 0 and pp <= model["num_layers"] and not tp_problems(model, tp):
                layouts.append((tp, pp))
    seen, out = set(), []
    for layout in layouts:
        if layout not in seen:
            seen.add(layout)
            out.append(layout)
    return out


def normalize_gpus(gpus=None, gpu_memory_bytes=None, gpu_count=1, gpu_indices=None):
    """A list of ``{"index", "memory_bytes", "name"}`` from gpubox_gpus facts or a size and count."""
    out = []
    if gpus:
        for i, gpu in enumerate(gpus):
            if not isinstance(gpu, dict):
                raise VramError(f"gpus[{i}] must be a dict like the gpubox_gpus facts, got {gpu!r}")
            mib = gpu.get("memory_total_mib")
            size = gpu.get("memory_bytes") or (int(mib) * MiB if mib else None)
            if not size:
                raise VramError(f"gpus[{i}] has no memory_total_mib")
            out.append({"index": gpu.get("index", i), "memory_bytes": int(size), "name": gpu.get("name") or ""})
    elif gpu_memory_bytes:
        out = [{"index": i, "memory_bytes": int(gpu_memory_bytes), "name": ""} for i in range(int(gpu_count or 1))]
    if gpu_indices is not None and out:
        known = {g["index"]: g for g in out}
        unknown = [i for i in gpu_indices if i not in known]
        if unknown:
            raise VramError(f"gpu_indices {unknown} are not among the GPUs {sorted(known)}")
        out = [known[i] for i in gpu_indices]
    return out


def parse_parallel(value, label):
    if value is None or value == "auto":
        return "auto"
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise VramError(f"{label} must be a number or auto, not {value!r}") from None
    if number < 1:
        raise VramError(f"{label} must be at least 1, not {number}")
    return number


def parse_max_model_len(value):
    if value is None or value == "auto":
        return value
    if isinstance(value, str) and value.strip().lower() in ("auto", "-1"):
        return "auto"
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise VramError(f"max_model_len must be a number or auto, not {value!r}") from None
    if number == -1:
        return "auto"
    if number < 1:
        raise VramError(f"max_model_len must be at least 1, not {number}")
    return number


def load_model(*, model_path=None, config=None, weight_bytes=None, name=None, dtype="auto", quantization=None):
    """(model, weights, serving dtype) from a folder or a config dict (``quantization`` overrides the
    checkpoint's, for the "quantized variant" estimate)."""
    tensors = None
    checkpoint_bytes = None
    files = []
    if model_path:
        folder = read_model_folder(model_path)
        config = folder["config"]
        tensors, files, checkpoint_bytes = folder["tensors"], folder["files"], folder["checkpoint_bytes"]
        name = name or os.path.basename(os.path.normpath(model_path))
    elif config is None:
        raise VramError("give model_path (a local Hugging Face model folder) or config (the config.json contents)")
    model = describe_model(config, name=name)
    if quantization is not None:
        model["quantization"] = quantization
        tensors = None
        weight_bytes = None
    dtype_name, dtype_bytes = serving_dtype(model, dtype)
    if tensors:
        weights = weights_from_tensors(model, tensors, dtype_bytes)
    else:
        weights = estimate_weights(model, dtype_bytes)
        if weight_bytes:
            weights = scale_weights(weights, int(weight_bytes))
    params = estimate_parameters(model)
    model["total_params"] = params["total"]
    model["active_params"] = params["active"]
    model["files"] = files
    model["checkpoint_bytes"] = checkpoint_bytes
    return model, weights, (dtype_name, dtype_bytes)


AWQ_4BIT = {"method": "awq", "bits": 4, "group_size": 128, "block": None, "bytes_per_param": 0.5 + (2 + 0.5) / 128}


def plan(
    *,
    model_path=None,
    config=None,
    weight_bytes=None,
    name=None,
    gpus=None,
    gpu_memory_bytes=None,
    gpu_count=1,
    gpu_indices=None,
    nodes=1,
    topology=None,
    device="cuda",
    gpu_memory_utilization=0.9,
    kv_cache_memory_bytes=None,
    max_model_len=None,
    dtype="auto",
    kv_cache_dtype="auto",
    tensor_parallel_size=1,
    pipeline_parallel_size=1,
    max_num_seqs=None,
    max_num_batched_tokens=None,
    block_size=None,
    enforce_eager=False,
    with_alternatives=True,
    quantization=None,
    _loaded=None,
):
    """Plan a vLLM deployment. Returns a dict (see the module's RETURN docs); raises VramError on bad input.

    ``tensor_parallel_size``/``pipeline_parallel_size`` ``auto`` pick the smallest layout that fits (TP
    inside one NVLink group first; with ``nodes`` > 1, TP = GPUs per node and PP = nodes).
    ``max_model_len`` None is the model's maximum (vLLM's default); ``auto`` the longest that fits.
    """
    if device not in ("cuda", "cpu"):
        raise VramError(f"device must be cuda or cpu, not {device!r}")
    if not 0 < float(gpu_memory_utilization) <= 1:
        raise VramError(f"gpu_memory_utilization must be in (0, 1], not {gpu_memory_utilization}")
    if kv_cache_memory_bytes is not None and int(kv_cache_memory_bytes) <= 0:
        raise VramError("kv_cache_memory_bytes must be positive")
    nodes = int(nodes or 1)
    if nodes < 1:
        raise VramError("nodes must be at least 1")
    loaded = _loaded or load_model(
        model_path=model_path,
        config=config,
        weight_bytes=weight_bytes,
        name=name,
        dtype=dtype,
        quantization=quantization,
    )
    model, weights, (dtype_name, dtype_bytes) = loaded
    pool = normalize_gpus(gpus, gpu_memory_bytes, gpu_count, gpu_indices)
    host_memory = None
    if device == "cpu":
        host_memory = pool[0]["memory_bytes"] if pool else None
        if not pool:
            if kv_cache_memory_bytes is None:
                raise VramError("device cpu needs kv_cache_memory_bytes, or the host memory as gpu_memory_mib")
            pool = [{"index": 0, "memory_bytes": int(kv_cache_memory_bytes), "name": "cpu"}]
    elif not pool:
        raise VramError("no GPU memory known: give gpus (the gpubox_gpus facts) or gpu_memory_mib")
    if nodes > 1 and len(pool) % nodes:
        raise VramError(f"{len(pool)} GPUs cannot be split evenly over {nodes} nodes")
    kv_name, kv_bytes = kv_cache_dtype_bytes(model, kv_cache_dtype, dtype_bytes, device)
    if block_size is None:
        block_size = (MLA_BLOCK_SIZE if model["mla"] else DEFAULT_BLOCK_SIZE)[device]
    if int(block_size) < 1:
        raise VramError("block_size must be positive")
    tp_req = parse_parallel(tensor_parallel_size, "tensor_parallel_size")
    pp_req = parse_parallel(pipeline_parallel_size, "pipeline_parallel_size")
    settings = {
        "device": device,
        "gpu_memory_utilization": float(gpu_memory_utilization),
        "kv_cache_memory_bytes": int(kv_cache_memory_bytes) if kv_cache_memory_bytes is not None else None,
        "max_model_len": parse_max_model_len(max_model_len),
        "max_num_seqs": int(max_num_seqs) if max_num_seqs else None,
        "max_num_batched_tokens": int(max_num_batched_tokens) if max_num_batched_tokens else None,
        "block_size": int(block_size),
        "enforce_eager": bool(enforce_eager),
        "dtype_bytes": dtype_bytes,
        "kv_name": kv_name,
        "kv_bytes": kv_bytes,
        "kv_requested": (kv_cache_dtype or "auto").lower(),
        "host_memory_bytes": host_memory,
        "nvlink_groups": nvlink_groups_of(topology, {g["index"] for g in pool}),
    }
    n = len(pool)
    if tp_req != "auto":
        problems = tp_problems(model, tp_req)
        if problems:
            valid = ", ".join(str(t) for t in valid_tp_sizes(model, max(n, 8))) or "none"
            raise VramError(
                f"tensor_parallel_size {tp_req} does not work for {model['name']} ({model['num_attention_heads']} "
                f"attention heads, {model['num_kv_heads']} KV heads): {'; '.join(problems)}. "
                f"Valid sizes up to {max(n, 8)}: {valid}"
            )
    if pp_req != "auto" and pp_req > model["num_layers"]:
        raise VramError(f"pipeline_parallel_size {pp_req} exceeds the model's {model['num_layers']} layers")

    if tp_req != "auto" and pp_req != "auto":
        layouts = [(tp_req, pp_req)]
    elif tp_req == "auto" and pp_req == "auto":
        layouts = candidate_layouts(model, n, nodes, settings["nvlink_groups"])
    elif tp_req == "auto":
        per_stage = max(1, n // pp_req)
        layouts = [(tp, pp_req) for tp in valid_tp_sizes(model, per_stage)]
    else:
        layouts = [(tp_req, pp) for pp in range(1, max(1, n // tp_req) + 1) if pp <= model["num_layers"]]
    if not layouts:
        raise VramError(f"no tensor_parallel_size works for {model['name']} on {n} GPUs")
    layouts = [(tp, pp) for tp, pp in layouts if tp * pp <= n] or layouts[:1]
    if layouts[0][0] * layouts[0][1] > n:
        tp, pp = layouts[0]
        raise VramError(
            f"tensor_parallel_size {tp} x pipeline_parallel_size {pp} needs {tp * pp} GPUs, but only {n} are given"
        )

    result = None
    for tp, pp in layouts:
        result = evaluate(model, weights, gpus=pool, tp=tp, pp=pp, settings=settings)
        if result["fits"]:
            break
    kv_per_token = kv_bytes_per_token_layer(model, kv_name, kv_bytes, 1) * len(model["kv_layers"])
    weight_total = weights_total(weights)
    result.update(
        {
            "model": {
                "name": model["name"],
                "architecture": model["architecture"],
                "num_layers": model["num_layers"],
                "attention": "MLA"
                if model["mla"]
                else (
                    "MHA"
                    if model["num_kv_heads"] == model["num_attention_heads"]
                    else ("MQA" if model["num_kv_heads"] == 1 else "GQA")
                ),
                "num_attention_heads": model["num_attention_heads"],
                "num_kv_heads": model["num_kv_heads"],
                "head_dim": model["head_dim"],
                "total_params": model["total_params"],
                "active_params": model["active_params"],
                "moe": bool(model["moe"]),
                "quantization": model["quantization"]["method"] if model["quantization"] else None,
                "max_position_len": model["max_model_len"],
                "weights_source": weights["source"],
                "checkpoint_bytes": model["checkpoint_bytes"],
                "skipped_bytes": int(weights["skipped"]),
            },
            "device": device,
            "dtype": dtype_name,
            "kv_cache_dtype": kv_name,
            "weight_bytes": weight_total,
            "kv_bytes_per_token": kv_per_token,
            "gpu_memory_utilization": settings["gpu_memory_utilization"],
            "kv_cache_memory_bytes": settings["kv_cache_memory_bytes"],
        }
    )
    if len(model["kv_layers"]) != model["num_layers"]:
        result["reasons"].append(
            f"hybrid model: {len(model['kv_layers'])} of {model['num_layers']} layers keep a KV cache; the state of "
            "the other layers is not counted"
        )
    vllm_args = {
        "tensor_parallel_size": result["tensor_parallel_size"],
        "pipeline_parallel_size": result["pipeline_parallel_size"],
        "max_model_len": result["max_model_len"],
    }
    if kv_name != "auto":
        vllm_args["kv_cache_dtype"] = kv_name
    result["vllm_args"] = vllm_args
    result["alternatives"] = []
    if not result["fits"] and with_alternatives:
        result["alternatives"] = alternatives(
            loaded,
            result,
            dict(
                model_path=model_path,
                config=config,
                weight_bytes=weight_bytes,
                name=name,
                gpus=gpus,
                gpu_memory_bytes=gpu_memory_bytes,
                gpu_count=gpu_count,
                gpu_indices=gpu_indices,
                nodes=nodes,
                topology=topology,
                device=device,
                gpu_memory_utilization=gpu_memory_utilization,
                kv_cache_memory_bytes=kv_cache_memory_bytes,
                max_model_len=max_model_len,
                dtype=dtype,
                kv_cache_dtype=kv_cache_dtype,
                tensor_parallel_size=tensor_parallel_size,
                pipeline_parallel_size=pipeline_parallel_size,
                max_num_seqs=max_num_seqs,
                max_num_batched_tokens=max_num_batched_tokens,
                block_size=block_size,
                enforce_eager=enforce_eager,
            ),
        )
    return result


def alternatives(loaded, failed, kwargs, limit=3):
    """Up to ``limit`` changed settings that do fit, each computed by planning again."""
    model = loaded[0]
    n = len(normalize_gpus(kwargs["gpus"], kwargs["gpu_memory_bytes"], kwargs["gpu_count"], kwargs["gpu_indices"]))
    tp, pp = failed["tensor_parallel_size"], failed["pipeline_parallel_size"]
    tries = []
    if kwargs["device"] == "cuda" and failed["kv_cache_dtype"] == "auto" and failed["kv_available_bytes"] > 0:
        tries.append(("fp8 KV cache (1 byte per element)", {"kv_cache_dtype": "fp8"}, False))
    larger = [t for t in valid_tp_sizes(model, n // pp) if t > tp]
    for size in larger:
        tries.append((f"tensor_parallel_size {size}", {"tensor_parallel_size": size}, False))
    if not larger and pp * tp * 2 <= n:
        tries.append((f"pipeline_parallel_size {pp * 2}", {"pipeline_parallel_size": pp * 2}, False))
    if failed["num_blocks"] > 0:
        tokens = failed["kv_tokens"]
        shorter = tokens // 1024 * 1024 if tokens >= 2048 else tokens
        if 0 < shorter < failed["max_model_len"] or (kwargs["max_model_len"] == "auto" and shorter > 0):
            tries.append((f"max_model_len {shorter:,}", {"max_model_len": shorter}, False))
    quant = model["quantization"]
    if not quant or (quant.get("bits") or 16) > 4:
        tries.append(
            (
                "a 4-bit AWQ variant of the model (weights estimated from config.json)",
                {"tensor_parallel_size": "auto"},
                True,
            )
        )
    if (
        kwargs["kv_cache_memory_bytes"] is None
        and kwargs["gpu_memory_utilization"] < 0.95
        and kwargs["device"] == "cuda"
    ):
        tries.append(("gpu_memory_utilization 0.95", {"gpu_memory_utilization": 0.95}, False))
    out = []
    for label, change, quantize in tries:
        args = dict(kwargs, **change)
        try:
            if quantize:
                result = plan(
                    **args,
                    with_alternatives=False,
                    quantization=AWQ_4BIT,
                    _loaded=load_model(
                        model_path=kwargs["model_path"],
                        config=kwargs["config"],
                        name=kwargs["name"],
                        dtype=kwargs["dtype"],
                        quantization=AWQ_4BIT,
                    ),
                )
            else:
                result = plan(**args, with_alternatives=False, _loaded=loaded)
        except VramError:
            continue
        if not result["fits"] or (
            label.startswith("tensor_parallel_size")
            and any(o["description"].startswith("tensor_parallel_size") for o in out)
        ):
            continue
        settings = dict(change)
        if quantize:
            settings["quantization"] = "awq"
        out.append(
            {
                "description": label,
                "settings": settings,
                "tensor_parallel_size": result["tensor_parallel_size"],
                "pipeline_parallel_size": result["pipeline_parallel_size"],
                "max_model_len": result["max_model_len"],
                "kv_tokens": result["kv_tokens"],
                "max_concurrency": result["max_concurrency"],
                "weight_bytes_per_gpu": result["weight_bytes_per_gpu"],
                "summary": f"{label}: TP {result['tensor_parallel_size']} x PP {result['pipeline_parallel_size']}, "
                f"weights {gib(result['weight_bytes_per_gpu'])} per GPU, {result['kv_tokens']:,} KV tokens, "
                f"max_model_len {result['max_model_len']:,} ({result['max_concurrency']}x)",
            }
        )
        if len(out) == limit:
            break
    return out


def no_fit_message(result):
    """The failure message: what does not fit, and the alternatives."""
    m = result["model"]
    head = (
        f"{m['name']} does not fit with tensor_parallel_size {result['tensor_parallel_size']}, "
        f"pipeline_parallel_size {result['pipeline_parallel_size']}: "
    )
    msg = head + (result["reasons"][0] if result["reasons"] else "no layout fits")
    if result["alternatives"]:
        msg += ". Alternatives that fit: " + "; ".join(
            f"{i}) {alt['summary']}" for i, alt in enumerate(result["alternatives"], 1)
        )
    else:
        msg += ". No alternative (fp8 KV cache, larger TP, shorter context, 4-bit weights) fits either."
    return msg
