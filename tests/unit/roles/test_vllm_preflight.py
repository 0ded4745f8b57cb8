"""The vllm role refuses bad input in preflight, before any change, with a message naming the fix.

Each case runs the real role against localhost in check mode with only its preflight phase, so
nothing on this machine changes. A fake nvidia-smi (recorded 4x L40S output) stands in for a GPU box.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..plugins.modules.test_gpu_info import write_fake

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SMOLLM2_CONFIG = Path(ROOT) / "tests" / "unit" / "fixtures" / "hf_configs" / "SmolLM2-135M-Instruct.json"
PLAYBOOK = """---
- name: vllm preflight
  hosts: all
  gather_facts: false
  roles:
    - role: gpubox.llm.vllm
"""


@pytest.fixture(name="run_preflight")
def fixture_run_preflight(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    model = tmp_path / "model"
    model.mkdir()
    # A real config (SmolLM2-135M-Instruct), so that the planner can size it; no weights: estimated from it.
    (model / "config.json").write_text(SMOLLM2_CONFIG.read_text())

    def run(extra, gpus=None, verbosity=0):
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        if gpus:
            write_fake(bindir, gpus)
        env["PATH"] = f"{bindir}:{os.path.dirname(sys.executable)}:{env['PATH']}"
        variables = {
            "vllm_base_dir": str(tmp_path / "opt"),
            "vllm_python": sys.executable,
            "ansible_python_interpreter": sys.executable,
            "vllm_instances": [{"name": "chat", "model": str(model), "port": 8000}],
        }
        variables.update(extra)
        (tmp_path / "vars.json").write_text(json.dumps(variables))
        proc = subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                "--check",
                "--tags",
                "vllm_preflight",
                *(["-" + "v" * verbosity] if verbosity else []),
                "-e",
                f"@{tmp_path / 'vars.json'}",
                str(playbook),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    return run


def _instance(model_dir, **kw):
    item = {"name": "chat", "model": model_dir, "port": 8000}
    item.update(kw)
    return item


def test_good_input_passes(run_preflight, tmp_path):
    rc, out = run_preflight({})
    assert rc == 0, out
    assert "failed=0" in out


def test_good_gpu_input_passes(run_preflight, tmp_path):
    model = _model(tmp_path, "Llama-3.1-8B-Instruct")
    rc, out = run_preflight(
        {"vllm_instances": [_instance(model, gpus=[2, 3], args={"tensor_parallel_size": 2})]}, gpus="l40s_4x"
    )
    assert rc == 0, out


@pytest.mark.parametrize(
    ("case", "gpus", "expected"),
    [
        (
            {"vllm_instances": [{"name": "a", "model": "m", "port": 8000}, {"name": "b", "model": "m", "port": 8000}]},
            None,
            "each instance needs its own port",
        ),
        ({"vllm_instances": [{"name": "a b", "model": "m", "port": 8000}]}, None, "names must be unique and match"),
        ({"vllm_device": "tpu"}, None, "vllm_device"),
        ({"vllm_instances": [{"name": "a", "model": "m"}]}, None, "port"),
        ({"_instance": {"gpus": [0]}}, None, "vllm_device resolved to 'cpu'"),
        ({"_instance": {"gpus": [4]}}, "l40s_4x", "goes beyond the 4 GPUs found"),
        ({"_instance": {"gpus": [1, 1]}}, "l40s_4x", "lists a GPU twice"),
        (
            {"_instance": {"gpus": [0, 1, 2], "args": {"tensor_parallel_size": 2}}},
            "l40s_4x",
            "tensor_parallel_size 2 must not exceed and must divide",
        ),
        (
            {"_instance": {"gpus": [0], "args": {"tensor-parallel-size": 2}}},
            "l40s_4x",
            "tensor_parallel_size 2 must not exceed and must divide",
        ),
        ({"_instance": {"args": {"port": 9000}}}, None, "args must not set port"),
        ({"_instance": {"api_key": "short"}}, None, "api_key is too short"),
        ({"_instance": {"model": "/nonexistent/model"}}, None, "is not a model folder"),
        ({"vllm_device": "cuda"}, None, "nvidia-smi"),
        ({"vllm_pip_cert": "/a.pem", "vllm_pip_cert_content": "PEM"}, None, "Set only one of vllm_pip_cert"),
        ({"vllm_min_free_disk_gib": {"cpu": 100000000}}, None, "needs 100000000 GiB"),
        ({"vllm_python": "/nonexistent/python3"}, None, "vllm_python /nonexistent/python3 cannot run"),
        ({"vllm_min_shm_mib": 100000000}, None, "and need at least vllm_min_shm_mib=100000000 MiB"),
    ],
    ids=[
        "duplicate-port",
        "bad-name",
        "unknown-device",
        "missing-port",
        "gpus-on-cpu",
        "gpu-beyond-count",
        "gpu-twice",
        "tp-not-dividing",
        "tp-too-large",
        "reserved-arg",
        "short-api-key",
        "missing-model",
        "cuda-without-driver",
        "two-certs",
        "disk-space",
        "missing-python",
        "small-shm",
    ],
)
def test_bad_input_fails_before_any_change(run_preflight, tmp_path, case, gpus, expected):
    case = dict(case)
    if "_instance" in case:
        case["vllm_instances"] = [_instance(str(tmp_path / "model"), **case.pop("_instance"))]
    rc, out = run_preflight(case, gpus=gpus)
    assert rc != 0, out
    assert expected in " ".join(out.split()), out
    assert "changed=0" in out, out


def test_old_python_is_refused(run_preflight, tmp_path):
    fake = tmp_path / "python3.8"
    fake.write_text('#!/bin/sh\necho \'{"version": "3.8", "path": "/", "free": 1}\'\n')
    fake.chmod(0o755)
    rc, out = run_preflight({"vllm_python": str(fake)})
    assert rc != 0, out
    assert "is Python 3.8; vLLM needs Python 3.10 or newer" in " ".join(out.split()), out


def test_api_key_stays_out_of_verbose_output(run_preflight, tmp_path):
    secret = "sk-gpubox-preflight-0123456789abcdef"
    model = str(tmp_path / "model")
    rc, out = run_preflight({"vllm_instances": [_instance(model, api_key=secret)]}, verbosity=3)
    assert rc == 0, out
    assert "Check each instance" in out
    assert "<localhost> EXEC" in out  # really verbose
    assert secret not in out


def test_shared_gpu_needs_budgets(run_preflight, tmp_path):
    model = _model(tmp_path, "Llama-3.1-8B-Instruct")
    chat = _instance(model, gpus=[0, 1], args={"tensor_parallel_size": 2})
    small = str(tmp_path / "model")
    embed = _instance(small, name="embed", port=8001, gpus=[1], task="embed", args={"gpu_memory_utilization": 0.1})
    rc, out = run_preflight({"vllm_instances": [chat, embed]}, gpus="l40s_4x")
    assert rc != 0, out
    text = " ".join(out.split())
    assert "GPU 1 is shared by chat (gpus [0, 1]) and embed (gpus [1]), but chat declares no budget." in text, out
    assert "changed=0" in out, out

    chat["args"]["gpu_memory_utilization"] = 0.9
    rc, out = run_preflight({"vllm_instances": [chat, embed]}, gpus="l40s_4x")
    assert rc != 0, out
    assert "whose budgets sum to 1 (chat 0.9 + embed 0.1), more than 0.95" in " ".join(out.split()), out

    chat["args"]["gpu_memory_utilization"] = 0.8
    rc, out = run_preflight({"vllm_instances": [chat, embed]}, gpus="l40s_4x")
    assert rc == 0, out


def _model(tmp_path, config):
    folder = tmp_path / config
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text((SMOLLM2_CONFIG.parent / f"{config}.json").read_text())
    return str(folder)


def test_model_that_does_not_fit_stops_with_alternatives(run_preflight, tmp_path):
    model = _model(tmp_path, "Llama-3.1-70B-Instruct")
    inst = _instance(model, gpus=[0], args={"max_model_len": 8192})
    rc, out = run_preflight({"vllm_instances": [inst]}, gpus="l40s_4x")
    assert rc != 0, out
    text = " ".join(out.split())
    assert "chat (Llama-3.1-70B-Instruct) does not fit with tensor_parallel_size 1" in text, out
    assert "Alternatives that fit" in text or "No alternative" in text, out
    assert "changed=0" in out, out


def test_auto_tensor_parallel_size_comes_from_the_plan(run_preflight, tmp_path):
    model = _model(tmp_path, "Llama-3.1-70B-Instruct")
    inst = _instance(model, gpus=[0, 1, 2, 3], args={"tensor_parallel_size": "auto", "max_model_len": 8192})
    rc, out = run_preflight({"vllm_instances": [inst]}, gpus="l40s_4x", verbosity=1)
    assert rc == 0, out
    # 141 GB of bf16 weights need all four 48 GB GPUs.
    resolved = (
        r"__vllm_resolved_args:\s+chat:\s+max_model_len: 8192\s+pipeline_parallel_size: 1\s+tensor_parallel_size: 4\s"
    )
    assert re.search(resolved, out), out


def test_auto_needs_a_local_model(run_preflight):
    inst = {
        "name": "chat",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "port": 8000,
        "args": {"max_model_len": "auto"},
    }
    rc, out = run_preflight({"vllm_instances": [inst]})
    assert rc != 0, out
    assert "vllm_instances chat: tensor_parallel_size, pipeline_parallel_size or max_model_len is 'auto'" in " ".join(
        out.split()
    ), out


def test_tensor_parallel_size_must_divide_the_heads(run_preflight, tmp_path):
    # SmolLM2 has 9 attention heads and 3 KV heads: TP 2 cannot split them.
    inst = _instance(str(tmp_path / "model"), gpus=[0, 1], args={"tensor_parallel_size": 2})
    rc, out = run_preflight({"vllm_instances": [inst]}, gpus="l40s_4x")
    assert rc != 0, out
    text = " ".join(out.split())
    assert "tensor_parallel_size 2 does not work for chat (model) (9 attention heads, 3 KV heads)" in text, out
    assert "Valid sizes up to 8: 1, 3" in text, out
    assert "changed=0" in out, out
