"""The file_manifest module on real folders."""

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.gpubox.llm.plugins.modules import file_manifest

from .utils import run_module

CONFIG = b'{"model_type": "llama"}\n'
WEIGHTS = bytes(range(256)) * 40


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_bytes(CONFIG)
    (folder / "sub" / "model.safetensors").write_bytes(WEIGHTS)
    return folder


def run(path, **args):
    return run_module(file_manifest.main, dict(path=str(path), **args))


def test_without_expectations_it_writes_a_manifest(model):
    result, failed = run(model)
    assert not failed and result["changed"] is False
    assert result["files"] == 2 and result["total_bytes"] == len(CONFIG) + len(WEIGHTS)
    assert result["checksums"] == {"config.json": sha(CONFIG), "sub/model.safetensors": sha(WEIGHTS)}
    assert result["manifest"] == f"{sha(CONFIG)}  config.json\n{sha(WEIGHTS)}  sub/model.safetensors\n"
    assert result["ok"] is True and result["extra"] == [] and result["free_bytes"] > 0


def test_a_matching_manifest(model, tmp_path):
    (tmp_path / "m.sha256").write_text(f"{sha(WEIGHTS)} *./sub/model.safetensors\n{sha(CONFIG)}  config.json\n")
    result, failed = run(model, manifest=str(tmp_path / "m.sha256"), extra="fail")
    assert not failed, result["msg"] if failed else ""
    assert result["ok"] and result["expected"] == 2 and result["mismatched"] == [] and result["message"] == ""
    written = run(model)[0]
    assert result["digest"] == written["digest"]


def test_a_mismatch_names_the_file_and_both_checksums(model, tmp_path):
    wrong = "0" * 64
    (tmp_path / "m.sha256").write_text(f"{sha(CONFIG)}  config.json\n{wrong}  sub/model.safetensors\n")
    result, failed = run(model, manifest=str(tmp_path / "m.sha256"))
    assert failed
    assert result["msg"] == (
        f"{model} does not match the manifest {tmp_path / 'm.sha256'}: sub/model.safetensors: sha256 {sha(WEIGHTS)}, "
        f"the manifest {tmp_path / 'm.sha256'} says {wrong}"
    )
    assert result["mismatched"] == [
        {"name": "sub/model.safetensors", "check": "sha256", "expected": wrong, "actual": sha(WEIGHTS)}
    ]


def test_extra_and_missing_files(model):
    (model / "README.md").write_text("hello")
    content = f"{sha(CONFIG)}  config.json\n{sha(WEIGHTS)}  sub/model.safetensors\n{'1' * 64}  tokenizer.json\n"
    result, failed = run(model, manifest_content=content, fail_on_mismatch=False)
    assert not failed and result["ok"] is False
    assert result["missing"] == ["tokenizer.json"] and result["extra"] == ["README.md"]
    assert "missing: tokenizer.json" in result["message"] and "README.md" not in result["message"]
    (model / "tokenizer.json").write_text("{}")
    result, failed = run(model, manifest_content=content.replace("1" * 64, sha(b"{}")), extra="fail")
    assert failed and result["msg"].endswith("not in the manifest: README.md")
    result, failed = run(model, manifest_content=content.replace("1" * 64, sha(b"{}")))
    assert not failed and result["extra"] == ["README.md"]


def test_manifest_inside_the_folder_is_not_extra(model):
    (model / "SHA256SUMS").write_text(f"{sha(CONFIG)}  config.json\n{sha(WEIGHTS)}  sub/model.safetensors\n")
    result, failed = run(model, manifest=str(model / "SHA256SUMS"), extra="fail")
    assert not failed and result["extra"] == []


def test_hub_style_checksums_and_sizes(model):
    result, failed = run(
        model,
        checksums={"sub/model.safetensors": sha(WEIGHTS).upper()},
        sizes={"config.json": len(CONFIG), "sub/model.safetensors": len(WEIGHTS)},
        manifest_name="the Hub's sizes and sha256",
    )
    assert not failed and result["ok"]
    assert list(result["checksums"]) == ["sub/model.safetensors"]  # only what has a checksum is read
    result, failed = run(model, sizes={"config.json": 1, "sub/model.safetensors": len(WEIGHTS)})
    assert failed and f"config.json: {len(CONFIG)} bytes, the expected sizes says 1" in result["msg"]


def test_sizes_without_hashing_count_the_bytes_missing(model):
    result, failed = run(
        model,
        sizes={"config.json": len(CONFIG), "sub/model.safetensors": 99, "new.bin": 1000},
        hash=False,
        fail_on_mismatch=False,
    )
    assert not failed and "checksums" not in result
    assert result["bytes_missing"] == 99 + 1000
    assert result["missing"] == ["new.bin"]


def test_missing_folder(tmp_path):
    result, failed = run(tmp_path / "nope", hash=False)
    assert not failed and result["exists"] is False and result["files"] == 0
    result, failed = run(tmp_path / "nope", manifest_content=f"{'a' * 64}  config.json\n")
    assert failed and "missing: config.json" in result["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"manifest": "/nonexistent.sha256"}, "cannot read the manifest /nonexistent.sha256"),
        ({"manifest_content": "junk\n"}, "line 1, is not"),
        ({"checksums": {"a": "xyz"}}, "is not a sha256"),
        ({"sizes": {"a": "big"}}, "is not a number of bytes"),
    ],
    ids=["unreadable", "junk", "bad-checksum", "bad-size"],
)
def test_bad_expectations(model, args, message):
    result, failed = run(model, **args)
    assert failed and message in result["msg"]


def test_a_file_is_not_a_folder(model):
    result, failed = run(model / "config.json", hash=False)
    assert failed and "is not a folder" in result["msg"]


def test_fingerprint_is_stable(model):
    first = run(model, hash=False)[0]
    second = run(model, hash=False)[0]
    assert first["fingerprint"] == second["fingerprint"]
    (model / "config.json").write_bytes(CONFIG + b" ")
    third = run(model, hash=False)[0]
    assert third["fingerprint"] != first["fingerprint"]
