"""file_manifest: sha256sum's format, the folder walk and the comparison."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils.file_manifest import (
    ManifestError,
    compare,
    describe,
    digest_of,
    fingerprint,
    format_manifest,
    free_bytes,
    parse_manifest,
    walk,
)

A = "a" * 64
B = "b" * 64


def test_parse_gnu_bsd_binary_comments_and_dot_slash():
    text = f"# written by hand\n\n{A}  ./config.json\n{B} *model.safetensors\r\nSHA256 (sub/t.json) = {A.upper()}\n"
    assert parse_manifest(text) == {"config.json": A, "model.safetensors": B, "sub/t.json": A}


def test_parse_escaped_names():
    assert parse_manifest(f"\\{A}  a\\\\b\\nc\n") == {"a\\b\nc": A}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lists no file"),
        ("not a line\n", "line 1, is not '<sha256>  <file>'"),
        (f"{A[:-1]}  x\n", "line 1"),
        (f"{A}  /etc/passwd\n", "not a path inside the folder"),
        (f"{A}  ../x\n", "not a path inside the folder"),
        (f"{A}  x\n{B}  x\n", "lists x twice"),
    ],
    ids=["empty", "junk", "short-hash", "absolute", "parent", "twice"],
)
def test_parse_refuses(text, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text)


def test_format_round_trips_and_sha256sum_checks_it(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "config.json").write_bytes(b"{}\n")
    (tmp_path / "sub" / "w.bin").write_bytes(b"\0" * 1000)
    sums = {
        "config.json": hashlib.sha256(b"{}\n").hexdigest(),
        "sub/w.bin": hashlib.sha256(b"\0" * 1000).hexdigest(),
    }
    text = format_manifest(sums)
    assert parse_manifest(text) == sums
    assert digest_of(sums) == hashlib.sha256(text.encode()).hexdigest()
    if shutil.which("sha256sum"):
        (tmp_path / "SUMS").write_text(text)
        proc = subprocess.run(["sha256sum", "-c", "SUMS"], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_walk_excludes_and_follows_file_links(tmp_path):
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / ".cache" / "huggingface" / "x.lock").write_text("")
    (tmp_path / ".gpubox-model-cache.json").write_text("{}")
    (tmp_path / "blob").write_bytes(b"12345")
    (tmp_path / "config.json").symlink_to(tmp_path / "blob")
    found = walk(str(tmp_path), [".cache/*", ".gpubox-model-cache.json"])
    assert sorted(found) == ["blob", "config.json"]
    assert found["config.json"].st_size == 5


def test_fingerprint_sees_a_touched_file(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    before = fingerprint(walk(str(tmp_path)))
    assert fingerprint(walk(str(tmp_path))) == before
    st = os.stat(tmp_path / "a")
    os.utime(tmp_path / "a", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert fingerprint(walk(str(tmp_path))) != before


def test_compare_and_describe():
    found = {"config.json": 3, "model.safetensors": 10, "README.md": 5, "tokenizer.json": 7}
    actual = {"config.json": A, "model.safetensors": A}
    mismatched, missing, extra = compare(
        found, actual, {"config.json": A, "model.safetensors": B, "vocab.json": A}, {"tokenizer.json": 8}
    )
    assert mismatched == [
        {"name": "model.safetensors", "check": "sha256", "expected": B, "actual": A},
        {"name": "tokenizer.json", "check": "size", "expected": 8, "actual": 7},
    ]
    assert missing == ["vocab.json"] and extra == ["README.md"]
    text = describe("/m", "the manifest /m.sha256", mismatched, missing, extra)
    assert text.startswith("/m does not match the manifest /m.sha256: ")
    assert f"model.safetensors: sha256 {A}, the manifest /m.sha256 says {B}" in text
    assert "tokenizer.json: 7 bytes, the manifest /m.sha256 says 8" in text
    assert "missing: vocab.json" in text and "not in the manifest /m.sha256: README.md" in text


def test_describe_caps_long_lists():
    mismatched = [{"name": f"f{i}", "check": "sha256", "expected": A, "actual": B} for i in range(8)]
    text = describe("/m", "x", mismatched, [f"m{i}" for i in range(7)], [])
    assert "and 3 more mismatched files" in text and "m4 and 2 more" in text


def test_free_bytes_of_a_folder_still_to_make(tmp_path):
    free, measured = free_bytes(str(tmp_path / "not" / "yet"))
    assert measured == str(tmp_path) and free > 0
