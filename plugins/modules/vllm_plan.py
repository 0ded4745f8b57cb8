#!/usr/bin/python
# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vllm_plan
short_description: Check that a model and its KV cache fit the GPUs before vLLM is started
description:
  - Sizes a vLLM deployment the way vLLM itself does at start-up, without a GPU and without starting anything.
  - Reads a local Hugging Face model folder (O(model_path)), its C(config.json) and the safetensors headers (never
    the tensor data) for the exact weight bytes of any dtype, quantized checkpoints included; or takes a O(config)
    dict and O(weight_bytes) (weights are estimated from the config when neither safetensors nor O(weight_bytes)
    are available).
  - "Per GPU: weights split by tensor parallelism (norms, MoE routers and DeepSeek's low-rank projections replicated,
    K/V projections replicated when the TP size exceeds the KV heads), pipeline stages split layers like vLLM."
  - "KV cache: C(total x gpu_memory_utilization - weights - activation peak - non-torch memory) per GPU, or
    O(kv_cache_memory_bytes); blocks of O(block_size) tokens, C(num_blocks = available // page_size // layers),
    as vLLM's C(KV cache size: N tokens) log line reports it. GQA/MQA use the KV heads, MLA (DeepSeek V2/V3) one
    latent of C(kv_lora_rank + qk_rope_head_dim) per token and layer."
  - Recommends the tensor and pipeline parallel sizes when they are V(auto), and the context length when
    O(max_model_len=auto).
  - When the model does not fit, fails (see O(fail_on_no_fit)) with the two or three best alternatives, each
    computed by planning again with the changed setting (fp8 KV cache, a larger tensor parallel size, a shorter
    context, a 4-bit AWQ variant, a higher O(gpu_memory_utilization)).
  - The estimated constants (activation peak, non-torch memory, CUDA graphs, driver-reserved memory) and their
    sources are documented in C(docs/planner.md) of the collection.
version_added: "0.1.0"
options:
  model_path:
    description:
      - A local Hugging Face model folder with C(config.json) and, ideally, C(*.safetensors) (sharded ones through
        C(model.safetensors.index.json)).
      - Mutually exclusive with O(config).
    type: path
  config:
    description:
      - The contents of a C(config.json), when the folder is not on the controller or the target.
      - Mutually exclusive with O(model_path).
    type: dict
  weight_bytes:
    description:
      - Total weight bytes of the checkpoint. Without it, and without safetensors in O(model_path), the weights are
        estimated from the config (parameter count times the bytes of the dtype or of the quantization in
        C(quantization_config)). Ignored when O(model_path) holds safetensors.
    type: int
  name:
    description: A name for the model in messages (the folder name or the config's C(_name_or_path) otherwise).
    type: str
  gpus:
    description:
      - The GPUs, as M(gpubox.llm.gpu_info) returns them in RV(gpubox.llm.gpu_info#module:ansible_facts.gpubox_gpus)
        (each needs C(memory_total_mib); C(index) and C(name) are used when present).
    type: list
    elements: dict
  gpu_indices:
    description: Plan only on these GPU indices of O(gpus) (the GPUs an instance is pinned to).
    type: list
    elements: int
  gpu_memory_mib:
    description:
      - Memory of one GPU in MiB (as nvidia-smi reports it), instead of O(gpus).
      - With O(device=cpu), the memory of the host (NUMA node) for vLLM's automatic CPU KV cache size.
    type: int
  gpu_count:
    description: Number of GPUs of O(gpu_memory_mib).
    type: int
    default: 1
  nodes:
    description:
      - Number of nodes the GPUs are spread over (equally). With more than one node and V(auto) sizes, tensor
        parallelism stays inside a node and pipeline parallelism spans the nodes.
    type: int
    default: 1
  topology:
    description:
      - The topology M(gpubox.llm.gpu_info) returns in
        RV(gpubox.llm.gpu_info#module:ansible_facts.gpubox_gpu_topology); only C(nvlink_groups) is used.
      - With V(auto) sizes, a tensor parallel group that fits inside one NVLink group is preferred, and the GPUs
        are picked inside NVLink groups.
    type: dict
  device:
    description:
      - V(cuda) for NVIDIA GPUs, V(cpu) for vLLM's CPU backend (default block size 128, no quantized KV cache, no
        activation reserve; the KV cache is O(kv_cache_memory_bytes), or O(gpu_memory_utilization) of
        O(gpu_memory_mib) minus the worker's memory).
    type: str
    choices: [cuda, cpu]
    default: cuda
  gpu_memory_utilization:
    description: vLLM's C(--gpu-memory-utilization), the share of each GPU's memory the instance may use.
    type: float
    default: 0.9
  kv_cache_memory_bytes:
    description: vLLM's C(--kv-cache-memory-bytes), an absolute KV cache size per GPU that replaces the budget.
    type: int
  max_model_len:
    description:
      - vLLM's C(--max-model-len), a number of tokens, or V(auto) for the longest context the KV cache holds for
        one sequence (at least 4096 tokens, or the model's maximum when shorter, to count as fitting).
      - By default the model's maximum (C(max_position_embeddings), rope scaling applied as vLLM does).
    type: raw
  dtype:
    description: vLLM's C(--dtype) (V(auto), V(bfloat16), V(float16), V(float32)).
    type: str
    default: auto
  kv_cache_dtype:
    description: vLLM's C(--kv-cache-dtype) (V(auto) follows O(dtype); V(fp8), V(fp8_e4m3), V(fp8_e5m2) take 1 byte).
    type: str
    default: auto
  tensor_parallel_size:
    description:
      - vLLM's C(--tensor-parallel-size), or V(auto) for the smallest size that fits, divides the attention heads
        and suits the KV heads (KV heads divisible by it, or it divisible by the KV heads).
    type: raw
    default: 1
  pipeline_parallel_size:
    description: vLLM's C(--pipeline-parallel-size), or V(auto).
    type: raw
    default: 1
  max_num_seqs:
    description:
      - vLLM's C(--max-num-seqs); it sizes the sampler's share of the activation peak.
      - By default vLLM's default for the GPU (1024 from 70 GiB except on A100, else 256; 128 on CPU).
    type: int
  max_num_batched_tokens:
    description: vLLM's C(--max-num-batched-tokens); by default vLLM's default for the GPU.
    type: int
  block_size:
    description: vLLM's C(--block-size); by default 16 on CUDA (64 for MLA models), 128 on CPU.
    type: int
  enforce_eager:
    description: vLLM's C(--enforce-eager); without it about 1 GiB of CUDA graphs must fit outside the budget.
    type: bool
    default: false
  fail_on_no_fit:
    description: Fail when the model does not fit, with the alternatives in the message. When V(false), return the
      plan with RV(plan.fits=false).
    type: bool
    default: true
notes:
  - Weights, KV bytes per token and KV tokens follow vLLM's arithmetic exactly; the activation peak, non-torch
    memory and CUDA graph figures are estimates fitted to vLLM's own logs (see C(docs/planner.md)).
  - Hybrid models (Mamba, linear attention layers) only count the KV cache of their attention layers; sliding
    window layers are counted as full attention (conservative).
author:
  - gpubox.llm maintainers (@gpubox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only computes; it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
---
- name: Gather the GPUs
  gpubox.llm.gpu_info:

- name: Plan Llama-3.1-8B on GPUs 2 and 3, with the smallest tensor parallel size that fits
  gpubox.llm.vllm_plan:
    model_path: /srv/models/Llama-3.1-8B-Instruct
    gpus: "{{ ansible_facts.gpubox_gpus }}"
    gpu_indices: [2, 3]
    topology: "{{ ansible_facts.gpubox_gpu_topology }}"
    tensor_parallel_size: auto
    max_model_len: 32768
  register: plan

- name: Use the plan
  ansible.builtin.debug:
    msg: >-
      TP {{ plan.plan.tensor_parallel_size }}, {{ plan.plan.kv_tokens }} KV tokens,
      {{ plan.plan.max_concurrency }} sequences of {{ plan.plan.max_model_len }} tokens

- name: Plan from a config dict on 8 x 24 GB, the longest context that fits
  gpubox.llm.vllm_plan:
    config: "{{ lookup('ansible.builtin.file', 'Llama-3.1-70B-Instruct/config.json') | from_json }}"
    gpu_memory_mib: 24576
    gpu_count: 8
    tensor_parallel_size: 8
    max_model_len: auto
    kv_cache_dtype: fp8

- name: Report instead of failing
  gpubox.llm.vllm_plan:
    model_path: /srv/models/Qwen3-30B-A3B
    gpu_memory_mib: 97887
    max_model_len: 40960
    fail_on_no_fit: false
  register: qwen
"""

RETURN = r"""
plan:
  description: The plan. Byte figures are per GPU unless the name says otherwise.
  returned: always, and with the failure when the model does not fit
  type: dict
  contains:
    fits:
      description: Whether vLLM would start with these settings.
      type: bool
      sample: true
    reasons:
      description: Why it fits (first) or does not, and warnings (NVLink groups crossed, CUDA graph headroom).
      type: list
      elements: str
      sample: ["fits on 1 x 44.99 GiB (NVIDIA L40S): weights 14.96 GiB per GPU, KV cache 23.91 GiB per GPU ..."]
    alternatives:
      description: When it does not fit, up to three changed settings that do, best first.
      type: list
      elements: dict
      sample:
        - description: fp8 KV cache (1 byte per element)
          settings: {kv_cache_dtype: fp8}
          tensor_parallel_size: 8
          pipeline_parallel_size: 1
          max_model_len: 131072
          kv_tokens: 177104
          max_concurrency: 1.35
          weight_bytes_per_gpu: 17640734720
          summary: "fp8 KV cache (1 byte per element): TP 8 x PP 1, ..."
    tensor_parallel_size:
      description: The tensor parallel size planned (the recommendation when V(auto)).
      type: int
      sample: 2
    pipeline_parallel_size:
      description: The pipeline parallel size planned.
      type: int
      sample: 1
    gpu_indices:
      description: The GPUs to use, NVLink groups first.
      type: list
      elements: int
      sample: [0, 1]
    max_model_len:
      description: The context length planned (the recommendation when V(auto)).
      type: int
      sample: 32768
    weight_bytes:
      description: Weight bytes of the whole model in GPU memory (the checkpoint cast to the serving dtype when it is
        not quantized; layers vLLM does not load, such as DeepSeek's multi-token prediction layer, left out).
      type: int
      sample: 16060522496
    weight_bytes_per_gpu:
      description: Weight bytes on the fullest GPU.
      type: int
      sample: 16060522496
    reserve_bytes:
      description: Non-KV memory subtracted from the budget (activation peak and non-torch memory; on CPU the worker).
      type: int
      sample: 1441569177
    reserve:
      description: The reserve by part, with the batch sizes the activation peak was sized for.
      type: dict
      sample:
        activation_peak_bytes: 1280507904
        non_torch_bytes: 161061273
        cuda_graph_bytes: 1073741824
        cpu_worker_runtime_bytes: 0
        max_num_seqs: 256
        max_num_batched_tokens: 2048
    gpu_memory_bytes:
      description: Memory of the smallest GPU used, as nvidia-smi reports it.
      type: int
      sample: 48305799168
    usable_memory_bytes:
      description: That memory less what the driver keeps (what CUDA reports as total).
      type: int
      sample: 47677823979
    budget_bytes:
      description: C(usable x gpu_memory_utilization), V(null) with O(kv_cache_memory_bytes).
      type: int
      sample: 42910041581
    kv_bytes_per_token:
      description: KV cache bytes of one token over all layers of the whole model (all GPUs together).
      type: int
      sample: 131072
    kv_bytes_per_token_per_gpu:
      description: KV cache bytes of one token on one GPU (its KV heads and its pipeline stage's layers).
      type: int
      sample: 131072
    kv_available_bytes:
      description: Memory left for the KV cache on the tightest GPU.
      type: int
      sample: 25887178240
    kv_cache_bytes:
      description: KV cache bytes allocated per GPU (whole blocks).
      type: int
      sample: 25887178752
    num_blocks:
      description: KV cache blocks, as vLLM computes them.
      type: int
      sample: 12344
    block_size:
      description: Tokens per block.
      type: int
      sample: 16
    kv_tokens:
      description: Tokens the KV cache holds (C(num_blocks x block_size), vLLM's C(KV cache size) log line).
      type: int
      sample: 197504
    kv_tokens_logged:
      description:
        - The figure vLLM 0.32 logs, C(int(num_blocks / cdiv(max_model_len, block_size) x max_model_len)); equal to
          RV(plan.kv_tokens) when O(max_model_len) is a multiple of the block size.
      type: int
      sample: 197504
    max_concurrency:
      description: Sequences of O(max_model_len) tokens the KV cache holds at once.
      type: float
      sample: 6.03
    stages:
      description: Per pipeline stage, its layers, KV layers, weight bytes, available KV bytes and blocks.
      type: list
      elements: dict
    model:
      description: What was read from the model (name, architecture, layers, attention kind, heads, parameter counts
        total and active, MoE, quantization method, maximum context, where the weights came from).
      type: dict
      sample:
        name: Llama-3.1-8B-Instruct
        architecture: LlamaForCausalLM
        attention: GQA
        num_layers: 32
        num_attention_heads: 32
        num_kv_heads: 8
        head_dim: 128
        total_params: 8030261248
        active_params: 8030261248
        moe: false
        quantization: null
        max_position_len: 131072
        weights_source: safetensors headers
    dtype:
      description: The serving dtype.
      type: str
      sample: bfloat16
    kv_cache_dtype:
      description: The KV cache dtype (V(auto) follows the serving dtype).
      type: str
      sample: auto
    vllm_args:
      description: The planned vLLM arguments, ready to merge into an instance's C(args).
      type: dict
      sample: {tensor_parallel_size: 1, pipeline_parallel_size: 1, max_model_len: 32768}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.llm.plugins.module_utils.vram import VramError, no_fit_message, plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            model_path=dict(type="path"),
            config=dict(type="dict"),
            weight_bytes=dict(type="int"),
            name=dict(type="str"),
            gpus=dict(type="list", elements="dict"),
            gpu_indices=dict(type="list", elements="int"),
            gpu_memory_mib=dict(type="int"),
            gpu_count=dict(type="int", default=1),
            nodes=dict(type="int", default=1),
            topology=dict(type="dict"),
            device=dict(type="str", choices=["cuda", "cpu"], default="cuda"),
            gpu_memory_utilization=dict(type="float", default=0.9),
            kv_cache_memory_bytes=dict(type="int"),
            max_model_len=dict(type="raw"),
            dtype=dict(type="str", default="auto"),
            kv_cache_dtype=dict(type="str", default="auto"),
            tensor_parallel_size=dict(type="raw", default=1),
            pipeline_parallel_size=dict(type="raw", default=1),
            max_num_seqs=dict(type="int"),
            max_num_batched_tokens=dict(type="int", no_log=False),
            block_size=dict(type="int"),
            enforce_eager=dict(type="bool", default=False),
            fail_on_no_fit=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("model_path", "config")],
        required_one_of=[("model_path", "config")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = plan(
            model_path=p["model_path"],
            config=p["config"],
            weight_bytes=p["weight_bytes"],
            name=p["name"],
            gpus=p["gpus"],
            gpu_memory_bytes=p["gpu_memory_mib"] * 1024 * 1024 if p["gpu_memory_mib"] else None,
            gpu_count=p["gpu_count"],
            gpu_indices=p["gpu_indices"],
            nodes=p["nodes"],
            topology=p["topology"],
            device=p["device"],
            gpu_memory_utilization=p["gpu_memory_utilization"],
            kv_cache_memory_bytes=p["kv_cache_memory_bytes"],
            max_model_len=p["max_model_len"],
            dtype=p["dtype"],
            kv_cache_dtype=p["kv_cache_dtype"],
            tensor_parallel_size=p["tensor_parallel_size"],
            pipeline_parallel_size=p["pipeline_parallel_size"],
            max_num_seqs=p["max_num_seqs"],
            max_num_batched_tokens=p["max_num_batched_tokens"],
            block_size=p["block_size"],
            enforce_eager=p["enforce_eager"],
        )
    except VramError as exc:
        module.fail_json(msg=str(exc))
    if not result["fits"] and p["fail_on_no_fit"]:
        module.fail_json(msg=no_fit_message(result), plan=result)
    module.exit_json(changed=False, plan=result)


if __name__ == "__main__":
    main()
