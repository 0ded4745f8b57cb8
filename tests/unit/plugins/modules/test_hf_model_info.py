"""hf_model_info against a fake Hugging Face Hub on 127.0.0.1 serving recorded API answers."""

from __future__ import annotations

import json

import pytest

from ansible_collections.gpubox.llm.plugins.modules import hf_model_info

from ...fakehub import FakeHub, fixture
from .utils import run_module

SMOL = fixture("smollm2-135m-instruct.json")
LLAMA = fixture("llama-3.1-8b-instruct.json")
TOKEN = "hf_TestTokenThatMustNeverBePrinted"
WEIGHTS = ["*.json", "*.safetensors", "*.txt"]


def run(hub, check_mode=False, **args):
    params = {"endpoint": hub.url, "timeout": 5}
    params.update(args)
    return run_module(hf_model_info.main, params, check_mode=check_mode)


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    with FakeHub() as server:
        server.add_info(SMOL)
        server.add_info(LLAMA, token=TOKEN)
        yield server


def test_public_repo_with_patterns(hub, tmp_path):
    result, failed = run(hub, repo_id=SMOL["id"], include=WEIGHTS, exclude=["onnx/"], dest=str(tmp_path / "smol"))
    assert not failed, result.get("msg")
    assert result["changed"] is False
    assert result["sha"] == SMOL["sha"] and result["revision"] == "main"
    assert result["gated"] is False and result["private"] is False
    names = [f["name"] for f in result["files"]]
    assert "model.safetensors" in names and not any(n.startswith("onnx/") for n in names)
    assert result["total_bytes"] == sum(f["size"] for f in result["files"]) > 269060552
    assert result["bytes_present"] == 0 and result["bytes_to_download"] == result["total_bytes"]
    assert result["missing"] == names
    assert result["free_bytes"] > 0 and result["free_path"] == str(tmp_path)
    assert result["up_to_date"] is False and result["from_marker"] is False
    assert result["access_checked"] is True
    assert hub.paths() == [
        f"GET /api/models/{SMOL['id']}/revision/main",
        f"HEAD /{SMOL['id']}/resolve/{SMOL['sha']}/config.json",
    ]
    assert hub.requests[0]["query"] == "blobs=true"
    assert hub.requests[0]["auth"] == ""


def test_check_mode_reads_the_same(hub):
    result, failed = run(hub, check_mode=True, repo_id=SMOL["id"], check_access=False)
    assert not failed and result["file_count"] == len(SMOL["siblings"])
    assert result["access_checked"] is False
    assert hub.paths() == [f"GET /api/models/{SMOL['id']}/revision/main"]


def test_files_already_there(hub, tmp_path):
    dest = tmp_path / "smol"
    dest.mkdir()
    (dest / "config.json").write_bytes(b"x" * 861)
    (dest / "merges.txt").write_bytes(b"x" * 10)  # a partial file is not there yet
    result, failed = run(hub, repo_id=SMOL["id"], include=WEIGHTS, exclude=["onnx/"], dest=str(dest))
    assert not failed
    assert result["bytes_present"] == 861
    assert result["bytes_to_download"] == result["total_bytes"] - 861
    assert "config.json" not in result["missing"] and "merges.txt" in result["missing"]


def _marker(dest, result, **changes):
    marker = {
        "source": "hub",
        "repo_id": result["repo_id"],
        "revision": result["revision"],
        "sha": result["sha"],
        "include": WEIGHTS,
        "exclude": [],
        "files": result["files"],
    }
    marker.update(changes)
    (dest / ".gpubox-model-cache.json").write_text(json.dumps(marker))


def _fill(dest, files):
    for entry in files:
        path = dest / entry["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.truncate(entry["size"])  # sparse: the module only compares sizes


def test_up_to_date_after_a_complete_download(hub, tmp_path):
    dest = tmp_path / "smol"
    first = run(hub, repo_id=SMOL["id"], include=WEIGHTS, dest=str(dest))[0]
    _fill(dest, first["files"])
    _marker(dest, first)
    result, failed = run(hub, repo_id=SMOL["id"], include=WEIGHTS, dest=str(dest))
    assert not failed and result["up_to_date"] is True and result["bytes_to_download"] == 0
    # Another selection is not up to date, nor a file that went missing.
    result = run(hub, repo_id=SMOL["id"], include=["*.json"], dest=str(dest))[0]
    assert result["up_to_date"] is False
    (dest / "tokenizer.json").unlink()
    result = run(hub, repo_id=SMOL["id"], include=WEIGHTS, dest=str(dest))[0]
    assert result["up_to_date"] is False and result["missing"] == ["tokenizer.json"]


def test_pinned_commit_with_a_complete_download_needs_no_network(hub, tmp_path):
    dest = tmp_path / "smol"
    first = run(hub, repo_id=SMOL["id"], revision=SMOL["sha"], include=WEIGHTS, dest=str(dest))[0]
    _fill(dest, first["files"])
    _marker(dest, first, revision=SMOL["sha"])
    seen = len(hub.requests)
    result, failed = run(hub, repo_id=SMOL["id"], revision=SMOL["sha"], include=WEIGHTS, dest=str(dest))
    assert not failed and result["from_marker"] is True and result["up_to_date"] is True
    assert len(hub.requests) == seen
    assert result["files"] == first["files"] and result["total_bytes"] == first["total_bytes"]
    # A branch always asks the Hub: it may have moved.
    run(hub, repo_id=SMOL["id"], include=WEIGHTS, dest=str(dest))
    assert len(hub.requests) > seen


def test_gated_repo_without_a_token_says_the_token_is_needed(hub):
    result, failed = run(hub, repo_id=LLAMA["id"], exclude=["original/"])
    assert failed
    assert result["msg"].startswith(
        "meta-llama/Llama-3.1-8B-Instruct is gated (gated: manual): set model_cache_hf_token (the token is needed)"
    )
    assert f"{hub.url}/meta-llama/Llama-3.1-8B-Instruct" in result["msg"]
    # The file list of a gated repository is public: only the API was asked, nothing was downloaded.
    assert hub.paths() == [f"GET /api/models/{LLAMA['id']}/revision/main"]


def test_gated_repo_with_the_token(hub):
    result, failed = run(hub, repo_id=LLAMA["id"], exclude=["original/"], token=TOKEN)
    assert not failed, result.get("msg")
    assert result["gated"] == "manual" and result["access_checked"] is True
    assert 16_000_000_000 < result["total_bytes"] < 16_100_000_000
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests)
    assert TOKEN not in json.dumps(result)


def test_token_from_the_environment(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result, failed = run(hub, repo_id=LLAMA["id"])
    assert not failed and result["access_checked"] is True


def test_gated_repo_whose_conditions_were_not_accepted(hub):
    hub.add_info(LLAMA, token=TOKEN, access=False)
    result, failed = run(hub, repo_id=LLAMA["id"], token=TOKEN)
    assert failed and "has no access to it yet (HTTP 403" in result["msg"]
    assert TOKEN not in json.dumps(result)


def test_wrong_token(hub):
    result, failed = run(hub, repo_id=LLAMA["id"], token="hf_wrong")
    assert failed and "the token is invalid or expired" in result["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"repo_id": "nobody/nothing"}, "was not found on"),
        ({"repo_id": SMOL["id"], "revision": "v9"}, "revision 'v9' does not exist"),
        ({"repo_id": SMOL["id"], "include": ["*.gguf"]}, "select no file of HuggingFaceTB/SmolLM2-135M-Instruct"),
        ({"repo_id": "not a repo"}, "is not a Hub repository id"),
    ],
    ids=["unknown-repo", "unknown-revision", "no-file-selected", "bad-id"],
)
def test_errors(hub, args, message):
    result, failed = run(hub, **args)
    assert failed and message in result["msg"], result["msg"]


def test_endpoint_from_the_environment(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    result, failed = run_module(hf_model_info.main, {"repo_id": SMOL["id"], "timeout": 5})
    assert not failed and result["url"].startswith(hub.url)
