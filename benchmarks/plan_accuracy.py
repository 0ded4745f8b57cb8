# Copyright: (c) 2026, gpubox.llm maintainers
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later
"""Accuracy bar of the vLLM planner (gpubox.llm.vllm_plan), against real vLLM on its CPU backend.

For every point of a grid of KV cache sizes and context lengths, starts the real vLLM CPU build on the real
SmolLM2-135M-Instruct folder (the image tests/harness/build-vllm-image.sh makes), directly with
``python -m vllm.entrypoints.openai.api_server`` in ``docker run --rm --network none`` (no systemd), and stops
it as soon as vLLM logs ``KV cache size: N tokens`` or exits. Then compares with the planner
(plugins/module_utils/vram.py, run on the same model folder):

* the KV token count must be within 3% of vLLM's log line;
* the fits/doesn't-fit answer must agree with whether vLLM got that far (vLLM refuses a max_model_len the
  KV cache cannot hold before it prints the line).

Prints a markdown table, writes it with every run's log under --out (benchmarks/results by default), and with
--update-docs puts it in docs/planner.md. Exits 1 when any point disagrees.

Usage (from the repository root; stdlib only, any Python 3.10+):
  python3 benchmarks/plan_accuracy.py                 # builds or reuses the image, runs the grid (minutes)
  python3 benchmarks/plan_accuracy.py --dry-run       # the planner's side only, no docker
  python3 benchmarks/plan_accuracy.py --image gpubox/vllm-cpu:0.32.0 --update-docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible_collections.gpubox.llm.plugins.module_utils import vram  # noqa: E402

MODEL_NAME = "SmolLM2-135M-Instruct"
MODEL_IN_IMAGE = f"/opt/models/{MODEL_NAME}"
MiB = 1024**2
GiB = 1024**3
TOLERANCE = 0.03
DTYPE = "float32"  # the flags that work on 2 CPU cores (inventories/demo): --dtype float32 --enforce-eager
# 2048 tokens of SmolLM2 at float32 need 16 blocks of 128 tokens x 30 layers x 1536 bytes, plus the null block
# vLLM's block pool holds back.
BLOCK_BYTES = 128 * 30 * 3 * 64 * 2 * 4
EXACT_2048 = 17 * BLOCK_BYTES

# (label, kv cache bytes, max_model_len, how the size is given: "flag" or "env" (VLLM_CPU_KVCACHE_SPACE, GiB))
GRID = [
    ("exactly 2048 tokens + the null block", EXACT_2048, 2048, "flag"),
    ("one byte short of it", EXACT_2048 - 1, 2048, "flag"),
    ("16 blocks, no room for the null block", 16 * BLOCK_BYTES, 2048, "flag"),
    ("256 MiB", 256 * MiB, 2048, "flag"),
    ("1 GiB", 1 * GiB, 2048, "flag"),
    ("2 GiB via VLLM_CPU_KVCACHE_SPACE", 2 * GiB, 4096, "env"),
    ("3 GiB, full context", 3 * GiB, 8192, "flag"),
    ("256 MiB, full context", 256 * MiB, 8192, "flag"),
    ("32 MiB", 32 * MiB, 2048, "flag"),
]

KV_LINE = re.compile(r"KV cache size: ([\d,]+) tokens")
EXPLICIT_LINE = re.compile(r"Explicitly set \(([\d.]+)/([\d.]+)\) GiB for KV cache")
VERSION_LINE = re.compile(r"vLLM API server version ([^\s]+)")
ERROR_PATTERNS = (
    re.compile(r"(To serve at least one request.*?)(?:Try increasing|$)", re.S),
    re.compile(r"(No available memory for the cache blocks[^\n]*)"),
    re.compile(r"(ValueError: [^\n]*)"),
    re.compile(r"(RuntimeError: [^\n]*)"),
)


def log(message):
    print(f"[plan_accuracy {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def docker(*args, check=True, capture=True):
    return subprocess.run(["docker", *args], check=check, text=True, capture_output=capture)


def image_name(requested):
    if requested:
        return requested
    log("building or reusing the vLLM CPU image (tests/harness/build-vllm-image.sh)")
    out = subprocess.run(
        [os.path.join(ROOT, "tests", "harness", "build-vllm-image.sh")], check=True, text=True, stdout=subprocess.PIPE
    )
    return out.stdout.strip().splitlines()[-1]


def venv_python(image):
    out = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "ls -d /opt/vllm/*/venv/bin/python | sort -V | tail -n1",
    )
    path = out.stdout.strip()
    if not path:
        sys.exit(f"{image} holds no /opt/vllm/<version>/venv")
    return path


def docker_logs(name):
    out = subprocess.run(
        ["docker", "logs", name], check=False, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return out.stdout


def model_folder(image, requested, out_dir):
    """The model folder on this machine: the harness cache, or a copy out of the image."""
    cache = os.environ.get("GPUBOX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gpubox"
    )
    for candidate in (requested, os.path.join(cache, "models", MODEL_NAME)):
        if candidate and os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    if image is None:
        sys.exit(f"no {MODEL_NAME} folder: run tests/harness/build-vllm-image.sh or give --model-dir")
    target = os.path.join(tempfile.mkdtemp(dir=out_dir), MODEL_NAME)
    log(f"copying {MODEL_IN_IMAGE} out of {image}")
    container = docker("create", image).stdout.strip()
    try:
        shutil.rmtree(target, ignore_errors=True)
        docker("cp", f"{container}:{MODEL_IN_IMAGE}", target)
    finally:
        docker("rm", "-f", container, check=False)
    return target


def plan(folder, kv_bytes, max_model_len):
    return vram.plan(
        model_path=folder,
        device="cpu",
        dtype=DTYPE,
        kv_cache_memory_bytes=kv_bytes,
        max_model_len=max_model_len,
        with_alternatives=False,
    )


def run_vllm(image, python, *, kv_bytes, max_model_len, how, timeout, log_path):
    """Start vLLM; return (tokens or None, exited, error, log text)."""
    name = f"gpubox-plan-accuracy-{os.getpid()}"
    docker("rm", "-f", name, check=False)
    env = ["-e", "HF_HUB_OFFLINE=1", "-e", "VLLM_NO_USAGE_STATS=1", "-e", "DO_NOT_TRACK=1"]
    args = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        MODEL_IN_IMAGE,
        "--dtype",
        DTYPE,
        "--enforce-eager",
        "--max-model-len",
        str(max_model_len),
        "--host",
        "127.0.0.1",
        "--port",
        "18199",
    ]
    if how == "env":
        env += ["-e", f"VLLM_CPU_KVCACHE_SPACE={kv_bytes // GiB}"]
    else:
        args += ["--kv-cache-memory-bytes", str(kv_bytes)]
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--shm-size",
        "2g",
        *env,
        "--entrypoint",
        args[0],
        image,
        *args[1:],
    )
    tokens, exited, text = None, False, ""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            text = docker_logs(name)
            match = KV_LINE.search(text)
            if match:
                tokens = int(match.group(1).replace(",", ""))
                break
            state = docker("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip()
            if state != "true":
                exited = True
                text = docker_logs(name)
                break
            time.sleep(1)
    finally:
        docker("rm", "-f", name, check=False)
    with open(log_path, "w") as handle:
        handle.write(text)
    error = None
    if tokens is None:
        for pattern in ERROR_PATTERNS:
            match = pattern.search(text)
            if match:
                error = " ".join(match.group(1).split())[:240]
                break
        error = error or ("exited without the KV cache line" if exited else f"no KV cache line within {timeout} s")
    return tokens, exited, error, text


def table(rows, version, image):
    lines = [
        f"vLLM {version} CPU backend, image `{image}`, {MODEL_NAME} at --dtype {DTYPE} --enforce-eager, "
        f"{datetime.date.today().isoformat()}.",
        "",
        "| setting | KV cache | max_model_len | vLLM KV tokens | planner KV tokens | difference | vLLM starts | "
        "planner fits | agrees |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        size = f"{row['kv_bytes']:,} B" + (" (env)" if row["how"] == "env" else "")
        vllm_tokens = f"{row['vllm_tokens']:,}" if row["vllm_tokens"] is not None else "none"
        diff = f"{row['diff'] * 100:+.2f}%" if row["diff"] is not None else "n/a"
        started = "yes" if row["vllm_fits"] else f"no: {row['error']}" if row["error"] else "no"
        if row["vllm_fits"] is None:
            started = "not run"
        lines.append(
            f"| {row['label']} | {size} | {row['max_model_len']:,} | {vllm_tokens} | {row['plan_tokens']:,} | {diff} | "
            f"{started} | {'yes' if row['plan_fits'] else 'no'} | {row['agrees']} |"
        )
    return "\n".join(lines)


def update_docs(body):
    path = os.path.join(ROOT, "docs", "planner.md")
    with open(path) as handle:
        text = handle.read()
    pattern = re.compile(r"(<!-- accuracy-grid:start -->\n).*?(<!-- accuracy-grid:end -->)", re.S)
    if not pattern.search(text):
        sys.exit("docs/planner.md has no accuracy-grid block")
    with open(path, "w") as handle:
        handle.write(pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text))
    log("updated docs/planner.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--image", help="the vLLM CPU image (default: tests/harness/build-vllm-image.sh)")
    parser.add_argument("--model-dir", help=f"the {MODEL_NAME} folder on this machine")
    parser.add_argument(
        "--out", default=os.environ.get("GPUBOX_BENCH_OUT", os.path.join(ROOT, "benchmarks", "results"))
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per vLLM start")
    parser.add_argument("--dry-run", action="store_true", help="the planner's side only")
    parser.add_argument("--update-docs", action="store_true", help="write the table into docs/planner.md")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    logs = os.path.join(args.out, "plan_accuracy-logs")
    os.makedirs(logs, exist_ok=True)
    image = None if args.dry_run else image_name(args.image)
    folder = model_folder(image, args.model_dir, args.out) if not args.dry_run else None
    python = venv_python(image) if image else None
    version = python.split("/")[3] if python else "(not run)"

    rows = []
    for i, (label, kv_bytes, max_model_len, how) in enumerate(GRID, 1):
        if folder:
            result = plan(folder, kv_bytes, max_model_len)
        else:
            with open(os.path.join(ROOT, "tests", "unit", "fixtures", "hf_configs", MODEL_NAME + ".json")) as f:
                config = json.load(f)
            result = vram.plan(
                config=config,
                device="cpu",
                dtype=DTYPE,
                kv_cache_memory_bytes=kv_bytes,
                max_model_len=max_model_len,
                with_alternatives=False,
            )
        row = {
            "label": label,
            "kv_bytes": kv_bytes,
            "max_model_len": max_model_len,
            "how": how,
            "plan_tokens": result["kv_tokens_logged"],
            "plan_fits": result["fits"],
            "vllm_tokens": None,
            "vllm_fits": None,
            "error": None,
            "diff": None,
            "agrees": "n/a",
        }
        if not args.dry_run:
            log(f"{i}/{len(GRID)} {label}: --max-model-len {max_model_len}, KV {kv_bytes:,} B ({how})")
            tokens, _exited, error, text = run_vllm(
                image,
                python,
                kv_bytes=kv_bytes,
                max_model_len=max_model_len,
                how=how,
                timeout=args.timeout,
                log_path=os.path.join(logs, f"{i:02d}.log"),
            )
            found = VERSION_LINE.search(text)
            version = found.group(1) if found else version
            row.update(vllm_tokens=tokens, vllm_fits=tokens is not None, error=error)
            ok = row["vllm_fits"] == row["plan_fits"]
            if tokens is not None:
                row["diff"] = (result["kv_tokens_logged"] - tokens) / tokens
                ok = ok and abs(row["diff"]) <= TOLERANCE
            row["agrees"] = "yes" if ok else "**NO**"
            log(
                f"   vLLM {tokens if tokens is not None else error}; planner {result['kv_tokens_logged']} "
                f"({'fits' if result['fits'] else 'does not fit'})"
            )
        rows.append(row)

    body = table(rows, version, image or "(dry run)")
    print(body)
    with open(os.path.join(args.out, "plan_accuracy.md"), "w") as handle:
        handle.write(body + "\n")
    if args.update_docs and not args.dry_run:
        update_docs(body)
    if folder and os.path.abspath(folder).startswith(os.path.abspath(args.out) + os.sep):
        shutil.rmtree(os.path.dirname(folder), ignore_errors=True)
    if any(row["agrees"] == "**NO**" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
