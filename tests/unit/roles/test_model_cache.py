"""The model_cache role, run for real on localhost with every model folder under the test's temporary directory.

Staging: a small model folder on the "controller" (this machine) is copied, checked and marked; reruns skip it;
a changed file is copied again; a folder that does not match its manifest, or has no config.json, stops the run
before anything is written. The real SmolLM2 folder (built by tests/harness/build-vllm-image.sh) is staged too when
it is there.

Hub: the Hugging Face Hub is unreachable here, so a fake Hub on 127.0.0.1 (tests/unit/fakehub.py) serves recorded
API answers and, for the download test, real files: the role's preflight module and the real `hf download` CLI talk
to it through model_cache_hf_endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from ..fakehub import FakeHub, fixture
from .rolerun import run_role

CONFIG = b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}\n'
TOKEN = "hf_RoleTestTokenThatMustNeverBePrinted"
MARKER = ".gpubox-model-cache.json"
HF_HUB_VERSION = "2.4.0"
CACHE = pathlib.Path(os.environ.get("GPUBOX_CACHE") or pathlib.Path.home() / ".cache" / "gpubox")
SMOLLM2 = CACHE / "models" / "SmolLM2-135M-Instruct"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_model(folder, weights=b"\x01" * 4096):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_bytes(CONFIG)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_bytes(b'{"version": "1.0"}\n')
    return folder


def _run(tmp_path, models, *, check=False, extra_args=(), **variables):
    all_vars = {"model_cache_dir": str(tmp_path / "models"), "model_cache_models": models}
    all_vars.update(variables)
    return run_role(tmp_path, "model_cache", variables=all_vars, check=check, extra_args=extra_args)


def changed(run):
    return [name.split(" | ", 1)[-1] for name, result in run.tasks() if result.get("changed")]


def ran(run, task):
    """Whether a task ran (was not skipped) for at least one item."""
    result = run.result(task)
    if "results" in result:
        return any(not r.get("skipped") for r in result["results"])
    return not result.get("skipped")


def failure(run):
    """The message of the first failed task, or of its first failed loop item."""
    for _name, result in run.tasks():
        if result.get("failed"):
            items = [r.get("msg", "") for r in result.get("results", []) if r.get("failed")]
            return " ".join((items[0] if items else result.get("msg", "")).split())
    return None


def fact(run, name):
    return run.result("Preflight | Publish the model paths and the offline environment")["ansible_facts"][name]


# --- Staging from the controller ------------------------------------------------------------------------------------


def test_stage_skip_and_recopy(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    dest = tmp_path / "models" / "tiny"
    models = [{"name": "tiny", "src": str(src)}]

    # Check mode first: says what it would do, writes nothing.
    run = _run(tmp_path, models, check=True)
    assert run.rc == 0, failure(run) or run.output
    assert "Copy each controller folder" in changed(run)
    assert not (tmp_path / "models").exists()

    run = _run(tmp_path, models)
    assert run.rc == 0, failure(run) or run.output
    assert "Copy each controller folder" in changed(run)
    assert "Write the marker of each model put in place" in changed(run)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (dest / name).read_bytes() == (src / name).read_bytes()
        assert (dest / name).stat().st_mode & 0o777 == 0o644
    assert dest.stat().st_mode & 0o777 == 0o755
    marker = json.loads((dest / MARKER).read_text())
    assert marker["source"] == "controller" and marker["src"] == str(src) and marker["manifest"] == "auto"
    assert fact(run, "model_cache_paths") == {"tiny": str(dest)}
    assert fact(run, "model_cache_env") == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    # Nothing changed: nothing is hashed, copied or written.
    run = _run(tmp_path, models)
    assert run.rc == 0, failure(run) or run.output
    assert changed(run) == []
    assert not ran(run, "Preflight | Check the controller folders to copy against their manifests")
    assert not ran(run, "Configure | Copy each controller folder")
    assert "up to date" in run.result("Preflight | Show the plan")["results"][0]["msg"]

    # One file changed on the controller: copied again, checked, marked.
    (src / "tokenizer.json").write_bytes(b'{"version": "1.1"}\n')
    run = _run(tmp_path, models)
    assert run.rc == 0, failure(run) or run.output
    assert "Copy each controller folder" in changed(run)
    assert (dest / "tokenizer.json").read_bytes() == b'{"version": "1.1"}\n'

    # A file damaged on the host (another time stamp) is found and repaired from the controller; then 0 changed.
    (dest / "model.safetensors").write_bytes(b"\x02" * 4096)
    run = _run(tmp_path, models)
    assert run.rc == 0, failure(run) or run.output
    assert (dest / "model.safetensors").read_bytes() == b"\x01" * 4096
    run = _run(tmp_path, models)
    assert run.rc == 0 and changed(run) == []


def test_manifest_file_and_prune(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    manifest = tmp_path / "controller" / "tiny.sha256"
    subprocess.run(f"sha256sum * > {manifest}", shell=True, cwd=src, check=True)
    dest = tmp_path / "models" / "tiny"
    dest.mkdir(parents=True)
    (dest / "pytorch_model.bin").write_bytes(b"old weights")  # left over from an older version of the model
    models = [{"name": "tiny", "src": str(src), "manifest": str(manifest), "prune": True}]

    run = _run(tmp_path, models)
    assert run.rc == 0, failure(run) or run.output
    assert not (dest / "pytorch_model.bin").exists()
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [MARKER, "config.json", "model.safetensors", "tokenizer.json"]
    )
    assert json.loads((dest / MARKER).read_text())["manifest"] == sha(manifest.read_text().rstrip().encode())
    run = _run(tmp_path, models)
    assert run.rc == 0 and changed(run) == []


def test_manifest_mismatch_stops_before_any_change(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    manifest = tmp_path / "controller" / "tiny.sha256"
    good = sha((src / "model.safetensors").read_bytes())
    tokenizer = sha((src / "tokenizer.json").read_bytes())
    manifest.write_text(f"{sha(CONFIG)}  config.json\n{'0' * 64}  model.safetensors\n{tokenizer}  tokenizer.json\n")
    run = _run(tmp_path, [{"name": "tiny", "src": str(src), "manifest": str(manifest)}])
    assert run.rc != 0
    message = failure(run)
    assert message == (
        f"model tiny: {src} does not match the manifest {manifest}: model.safetensors: sha256 {good}, the manifest "
        f"{manifest} says {'0' * 64}. Nothing was copied. Fix: restore the folder from a good copy, or write the "
        "manifest again if the files are the ones you want."
    )
    assert not (tmp_path / "models").exists()


def test_file_the_manifest_does_not_list_is_refused(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    manifest = tmp_path / "controller" / "tiny.sha256"
    subprocess.run(f"sha256sum * > {manifest}", shell=True, cwd=src, check=True)
    (src / "unverified.bin").write_bytes(b"?")
    run = _run(tmp_path, [{"name": "tiny", "src": str(src), "manifest": str(manifest)}])
    assert run.rc != 0
    assert f"not in the manifest {manifest}: unverified.bin. Nothing was copied." in failure(run)
    assert not (tmp_path / "models").exists()


def test_folder_without_config_json(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    (src / "config.json").unlink()
    run = _run(tmp_path, [{"name": "tiny", "src": str(src)}])
    assert run.rc != 0
    assert failure(run) == (
        f"model tiny: {src} on the controller has no config.json, so it is not a Hugging Face model folder that vLLM "
        "can serve (2 files: model.safetensors, tokenizer.json). Fix: point src at the folder that holds config.json "
        "(in a Hub cache, models--<org>--<name>/snapshots/<commit>)."
    )
    assert not (tmp_path / "models").exists()
    run = _run(tmp_path, [{"name": "tiny", "src": str(tmp_path / "nowhere")}])
    assert f"src {tmp_path / 'nowhere'} is not a folder on the controller" in failure(run)


def test_bad_entry_is_refused_before_any_change(tmp_path):
    run = _run(tmp_path, [{"name": "tiny", "src": "/x", "revison": "main"}])
    assert run.rc != 0
    assert "model_cache_models[0] (tiny): unknown key(s) revison for source controller" in run.output
    assert not (tmp_path / "models").exists()


def test_not_enough_disk_for_a_copy(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    run = _run(tmp_path, [{"name": "tiny", "src": str(src)}], model_cache_disk_margin_gib=10**9)
    assert run.rc != 0
    message = failure(run)
    assert message.startswith(f"model tiny: 4.08 KB to copy from {src} into {tmp_path / 'models' / 'tiny'}, plus a")
    assert "Nothing was downloaded or copied." in message
    assert not (tmp_path / "models").exists()


@pytest.mark.skipif(shutil.which("rsync") is None, reason="the synchronize method needs rsync, which is not installed")
def test_synchronize(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    dest = tmp_path / "models" / "tiny"
    dest.mkdir(parents=True)
    (dest / "stale.bin").write_bytes(b"x")
    models = [{"name": "tiny", "src": str(src), "prune": True}]
    run = _run(tmp_path, models, model_cache_stage_method="synchronize")
    assert run.rc == 0, failure(run) or run.output
    assert "Synchronize each controller folder" in changed(run)
    assert (dest / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert not (dest / "stale.bin").exists() and (dest / MARKER).exists()
    run = _run(tmp_path, models, model_cache_stage_method="synchronize")
    assert run.rc == 0 and changed(run) == []


@pytest.mark.skipif(
    not (SMOLLM2 / "config.json").is_file(),
    reason=f"no SmolLM2 folder at {SMOLLM2}: tests/harness/build-vllm-image.sh makes it (make test, make demo)",
)
def test_stage_the_real_smollm2_folder(tmp_path):
    models = [{"name": "smollm2", "src": str(SMOLLM2)}]
    run = _run(tmp_path, models)
    assert run.rc == 0, failure(run) or run.output
    dest = tmp_path / "models" / "smollm2"
    for path in SMOLLM2.rglob("*"):
        if path.is_file():
            copy = dest / path.relative_to(SMOLLM2)
            assert copy.stat().st_size == path.stat().st_size
    weights = dest / "model.safetensors"
    assert sha(weights.read_bytes()) == sha((SMOLLM2 / "model.safetensors").read_bytes())
    run = _run(tmp_path, models)
    assert run.rc == 0 and changed(run) == []


# --- The Hugging Face Hub -------------------------------------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub() as server:
        yield server


def test_hub_check_mode_says_what_it_would_download(tmp_path, hub):
    smol = hub.add_info(fixture("smollm2-135m-instruct.json"))
    models = [{"name": "smol", "repo_id": smol["id"], "exclude": ["onnx/", "runs/"]}]
    run = _run(tmp_path, models, check=True, model_cache_hf_endpoint=hub.url, model_cache_hf_venv=str(tmp_path / "hf"))
    assert run.rc == 0, failure(run) or run.output
    would = run.result("Configure | Say what check mode would download")["results"][0]["msg"]
    assert f"of {smol['id']} at {smol['sha']} to {tmp_path / 'models' / 'smol'}" in would
    assert would.startswith("would download 259.82 MB (10 files, 259.82 MB in all)")
    assert not ran(run, "Configure | Download each repository")
    assert not (tmp_path / "models").exists() and not (tmp_path / "hf").exists()
    # Only the API and one HEAD were asked: nothing was downloaded.
    assert hub.paths() == [
        f"GET /api/models/{smol['id']}/revision/main",
        f"HEAD /{smol['id']}/resolve/{smol['sha']}/config.json",
    ]


def test_hub_gated_without_a_token(tmp_path, hub):
    llama = hub.add_info(fixture("llama-3.1-8b-instruct.json"), token=TOKEN)
    run = _run(tmp_path, [{"name": "llama", "repo_id": llama["id"]}], model_cache_hf_endpoint=hub.url)
    assert run.rc != 0
    assert failure(run).startswith(
        "meta-llama/Llama-3.1-8B-Instruct is gated (gated: manual): set model_cache_hf_token (the token is needed)"
    )
    assert not (tmp_path / "models").exists()


def test_hub_not_enough_disk(tmp_path, hub):
    big = fixture("llama-3.1-8b-instruct.json")
    big["gated"] = False
    next(s for s in big["siblings"] if s["rfilename"] == "original/consolidated.00.pth")["size"] = 2**50
    hub.add_info(big)
    run = _run(tmp_path, [{"name": "llama", "repo_id": big["id"]}], model_cache_hf_endpoint=hub.url)
    assert run.rc != 0
    message = failure(run)
    assert message.startswith(f"model llama: 1.00 PB to download from {big['id']} into {tmp_path / 'models' / 'llama'}")
    assert (
        "Fix: free space, put the model on a larger filesystem (dest or model_cache_dir), or download fewer files"
        in message
    )
    assert not (tmp_path / "models").exists()
    # Leaving the big file out makes it fit.
    run = _run(
        tmp_path,
        [{"name": "llama", "repo_id": big["id"], "exclude": ["original/"]}],
        check=True,
        model_cache_hf_endpoint=hub.url,
    )
    assert run.rc == 0, failure(run)


@pytest.fixture(scope="module")
def hf_venv(tmp_path_factory):
    """A venv with the hf CLI, as the role's install phase leaves it (from the harness's wheel cache when it has it)."""
    venv = tmp_path_factory.mktemp("hf") / "hf-cli"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheels = CACHE / "wheels"
    links = ["--find-links", str(wheels)] if any(wheels.glob("huggingface_hub-*.whl")) else []
    proc = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *links, f"huggingface_hub=={HF_HUB_VERSION}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot install huggingface_hub=={HF_HUB_VERSION} for the hf CLI: {proc.stderr[-500:]}")
    return venv


def test_hub_download_for_real_from_a_gated_repo(tmp_path, hub, hf_venv):
    files = {
        "config.json": CONFIG,
        "model.safetensors": bytes(range(256)) * 1000,
        "tokenizer.json": b"{}\n",
        "original/consolidated.00.pth": b"\x00" * 1000,
    }
    sha_commit = "c" * 40
    hub.add_files(
        "TestOrg/tiny-gated",
        files,
        sha=sha_commit,
        lfs={"model.safetensors", "original/consolidated.00.pth"},
        gated="manual",
        token=TOKEN,
    )
    dest = tmp_path / "models" / "tiny"
    models = [{"name": "tiny", "repo_id": "TestOrg/tiny-gated", "revision": sha_commit, "exclude": ["original/"]}]
    settings = {"model_cache_hf_endpoint": hub.url, "model_cache_hf_venv": str(hf_venv), "model_cache_hf_token": TOKEN}

    run = _run(tmp_path, models, extra_args=("-vvv",), **settings)
    assert run.rc == 0, run.output[-4000:]
    assert TOKEN not in run.output
    landed = sorted(p.name for p in dest.iterdir())
    assert landed == sorted([".cache", MARKER, "config.json", "model.safetensors", "tokenizer.json"])
    assert (dest / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not (hf_venv / "hf-home" / "token").exists()
    downloads = [p for p in hub.paths() if p.startswith("GET /TestOrg/tiny-gated/resolve/")]
    assert sorted(downloads) == [
        f"GET /TestOrg/tiny-gated/resolve/{sha_commit}/{n}"
        for n in ("config.json", "model.safetensors", "tokenizer.json")
    ]
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests if r["path"].startswith("/TestOrg/tiny-gated/"))
    for path in dest.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()
    marker = json.loads((dest / MARKER).read_text())
    assert marker["sha"] == sha_commit and [f["name"] for f in marker["files"]] == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]

    # Pinned and complete: the rerun changes nothing and does not even ask the Hub.
    seen = len(hub.requests)
    run = _run(tmp_path, models, **settings)
    assert run.rc == 0, failure(run)
    assert changed(run) == []
    assert len(hub.requests) == seen

    # A weight file that went missing is downloaded again (hf resumes), then checked.
    (dest / "model.safetensors").unlink()
    run = _run(tmp_path, models, **settings)
    assert run.rc == 0, failure(run)
    assert "Download each repository" in changed(run)
    assert (dest / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_preflight_only_checks_and_publishes_the_paths(tmp_path):
    src = make_model(tmp_path / "controller" / "tiny")
    run = _run(
        tmp_path,
        [{"name": "tiny", "src": str(src)}, {"name": "other", "src": str(src), "dest": str(tmp_path / "d" / "o")}],
        extra_args=("--tags", "model_cache_preflight"),
    )
    assert run.rc == 0, failure(run) or run.output
    assert fact(run, "model_cache_paths") == {
        "tiny": str(tmp_path / "models" / "tiny"),
        "other": str(tmp_path / "d" / "o"),
    }
    assert changed(run) == []
    assert not (tmp_path / "models").exists() and not (tmp_path / "d").exists()
