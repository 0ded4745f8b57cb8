"""hf_hub: the Hub API answer, huggingface_hub's include/exclude rules, the local folder and the marker."""

from __future__ import annotations

import json

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils import hf_hub
from ansible_collections.gpubox.llm.plugins.module_utils.hf_hub import (
    HubClient,
    HubError,
    local_state,
    marker_matches,
    parse_model_info,
    read_marker,
    select,
)

from ...fakehub import FakeHub, fixture

SMOL = fixture("smollm2-135m-instruct.json")
LLAMA = fixture("llama-3.1-8b-instruct.json")
NAMES = [s["rfilename"] for s in SMOL["siblings"]]


# --- include / exclude, as huggingface_hub.utils.filter_repo_objects ----------------------------------------------


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        # No include keeps everything.
        (None, None, NAMES),
        # "*" crosses "/": *.onnx also matches onnx/model.onnx.
        (["*.onnx"], None, [n for n in NAMES if n.endswith(".onnx")]),
        # A folder pattern (trailing "/") means everything under it.
        (None, ["onnx/", "runs/"], [n for n in NAMES if not n.startswith(("onnx/", "runs/"))]),
        (["*.json", "*.safetensors"], ["onnx/"], [n for n in NAMES if n.endswith((".json", ".safetensors"))]),
        # Case-sensitive on every platform (fnmatchcase).
        (["README.MD"], None, []),
        # Exclude wins over include.
        (
            ["*.json"],
            ["tokenizer*"],
            ["config.json", "generation_config.json", "special_tokens_map.json", "vocab.json"],
        ),
    ],
    ids=["all", "star-crosses-slash", "folders", "weights-only", "case", "exclude-wins"],
)
def test_select_follows_filter_repo_objects(include, exclude, expected):
    assert select(NAMES, include, exclude) == expected


def test_select_normalizes_backslashes():
    assert select(["onnx/model.onnx", "config.json"], None, ["onnx\\"]) == ["config.json"]


# --- the model-info answer ------------------------------------------------------------------------------------------


def test_parse_public_repo_with_patterns():
    info = parse_model_info(SMOL, ["*.json", "*.safetensors", "*.txt"], ["onnx/", "runs/"])
    assert info["sha"] == SMOL["sha"]
    assert info["gated"] is False and info["private"] is False
    names = [f["name"] for f in info["files"]]
    assert names == sorted(names)
    assert "model.safetensors" in names and "merges.txt" in names
    assert not any(n.startswith(("onnx/", "runs/")) or n == "README.md" for n in names)
    weights = next(f for f in info["files"] if f["name"] == "model.safetensors")
    assert weights["size"] == 269060552 and weights["lfs"] is True and len(weights["sha256"]) == 64
    config = next(f for f in info["files"] if f["name"] == "config.json")
    assert config["sha256"] is None and config["lfs"] is False and config["blob_id"]
    assert info["total_bytes"] == sum(f["size"] for f in info["files"])
    assert info["repo_file_count"] == len(SMOL["siblings"])


def test_parse_gated_repo_without_the_original_checkpoint():
    info = parse_model_info(LLAMA, None, ["original/"])
    assert info["gated"] == "manual"
    assert info["file_count"] == len(LLAMA["siblings"]) - 3
    # Four shards and the small files: about 16 GB, the original/ checkpoint (another 16 GB) left out.
    assert 16_000_000_000 < info["total_bytes"] < 16_100_000_000


def test_lfs_size_is_used_when_the_entry_has_none():
    data = {"sha": "a" * 40, "siblings": [{"rfilename": "w.bin", "lfs": {"sha256": "b" * 64, "size": 7}}]}
    assert parse_model_info(data)["files"][0]["size"] == 7


def test_answer_without_sizes_is_refused():
    # What the API returns without ?blobs=true (or a mirror that ignores it): names only.
    data = {"sha": "a" * 40, "siblings": [{"rfilename": "config.json"}]}
    with pytest.raises(HubError, match="blobs=true"):
        parse_model_info(data)


@pytest.mark.parametrize("data", [[], {"siblings": []}, {"sha": "a" * 40}], ids=["list", "no-sha", "no-siblings"])
def test_answer_that_is_not_model_info(data):
    with pytest.raises(HubError):
        parse_model_info(data)


# --- the folder and the marker ------------------------------------------------------------------------------------


def test_local_state_counts_only_files_of_the_right_size(tmp_path):
    (tmp_path / "config.json").write_bytes(b"x" * 10)
    (tmp_path / "model.safetensors").write_bytes(b"x" * 5)  # a partial file
    files = [{"name": "config.json", "size": 10}, {"name": "model.safetensors", "size": 50}, {"name": "a/b", "size": 1}]
    assert local_state(str(tmp_path), files) == (10, ["model.safetensors", "a/b"])


def test_marker(tmp_path):
    assert read_marker(str(tmp_path)) is None
    (tmp_path / hf_hub.MARKER_NAME).write_text("not json")
    assert read_marker(str(tmp_path)) is None
    marker = {
        "source": "hub",
        "repo_id": "o/m",
        "sha": "a" * 40,
        "include": ["*.json", "*.bin"],
        "exclude": [],
        "files": [],
    }
    (tmp_path / hf_hub.MARKER_NAME).write_text(json.dumps(marker))
    found = read_marker(str(tmp_path))
    assert marker_matches(found, "o/m", "a" * 40, ["*.bin", "*.json"], None)
    assert not marker_matches(found, "o/m", "b" * 40, ["*.json", "*.bin"], [])
    assert not marker_matches(found, "o/other", "a" * 40, ["*.json", "*.bin"], [])
    assert not marker_matches(found, "o/m", "a" * 40, ["*.json"], [])
    assert not marker_matches(dict(found, source="controller"), "o/m", "a" * 40, ["*.json", "*.bin"], [])


# --- HTTP, against the fake Hub on 127.0.0.1 ------------------------------------------------------------------------


def test_client_sends_the_token_only_in_the_header():
    with FakeHub() as hub:
        hub.add_info(LLAMA, token="hf_right")
        info = HubClient(hub.url, token="hf_right").model_info(LLAMA["id"], "main")
    assert info["url"] == f"{hub.url}/api/models/{LLAMA['id']}/revision/main?blobs=true"
    assert hub.requests[0]["auth"] == "Bearer hf_right"
    assert "hf_right" not in info["url"]


def test_revision_is_quoted():
    with FakeHub() as hub:
        hub.add_info(SMOL, refs={"refs/pr/1": SMOL["sha"]})
        info = HubClient(hub.url).model_info(SMOL["id"], "refs/pr/1")
    assert info["sha"] == SMOL["sha"]
    assert hub.requests[0]["path"] == f"/api/models/{SMOL['id']}/revision/refs/pr/1"


@pytest.mark.parametrize(
    ("repo", "revision", "token", "message"),
    [
        (
            "nobody/nothing",
            "main",
            None,
            "was not found on .* if the repository is private or gated, a Hugging Face token",
        ),
        ("nobody/nothing", "main", "hf_x", "was not found on .* with the token given"),
        (SMOL["id"], "v9.9", None, "revision 'v9.9' does not exist in HuggingFaceTB/SmolLM2-135M-Instruct"),
    ],
    ids=["unknown-repo", "unknown-repo-with-token", "unknown-revision"],
)
def test_api_errors_say_what_to_do(repo, revision, token, message):
    with FakeHub() as hub:
        hub.add_info(SMOL)
        with pytest.raises(HubError, match=message) as caught:
            HubClient(hub.url, token=token).model_info(repo, revision)
    assert "hf_x" not in caught.value.message


def test_unreachable_hub():
    with FakeHub() as hub:
        url = hub.url
    with pytest.raises(HubError, match=r"cannot reach the Hugging Face Hub .* proxy.*source: controller"):
        HubClient(url, timeout=2).model_info(SMOL["id"], "main")


def test_bad_repo_id_and_endpoint():
    with pytest.raises(HubError, match="not a Hub repository id"):
        HubClient("http://127.0.0.1:9").model_info("a/b/c", "main")
    with pytest.raises(HubError, match="must be an http"):
        HubClient("ftp://example.com")


@pytest.mark.parametrize(
    ("token", "access", "message"),
    [
        (None, True, "is gated \\(gated: manual\\): set model_cache_hf_token \\(the token is needed\\)"),
        ("hf_wrong", True, "refused the token"),
        ("hf_right", False, "is gated and the token's account has no access to it yet .* Accept the conditions at"),
    ],
    ids=["no-token", "wrong-token", "no-access"],
)
def test_access_check_on_a_gated_repo(token, access, message):
    with FakeHub() as hub:
        hub.add_info(LLAMA, token="hf_right", access=access)
        client = HubClient(hub.url, token=token)
        with pytest.raises(HubError, match=message) as caught:
            client.check_access(LLAMA["id"], LLAMA["sha"], "config.json", "manual")
    assert "hf_right" not in caught.value.message and "hf_wrong" not in caught.value.message
    assert hub.requests[-1]["method"] == "HEAD"


def test_access_check_passes_with_access():
    with FakeHub() as hub:
        hub.add_info(LLAMA, token="hf_right")
        assert (
            HubClient(hub.url, token="hf_right").check_access(LLAMA["id"], LLAMA["sha"], "config.json", "manual") == 200
        )
