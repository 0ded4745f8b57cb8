"""The model_cache_models filter: defaults and refused entries."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gpubox.llm.plugins.filter.model_cache_models import FilterModule, model_cache_models

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_registered():
    assert FilterModule().filters()["model_cache_models"] is model_cache_models


def test_defaults():
    out = model_cache_models(
        [
            {"name": "smol", "repo_id": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            {"name": "pinned", "repo_id": "gpt2", "revision": SHA, "include": "*.json", "ignore_patterns": ["onnx/"]},
            {"name": "staged", "src": "/data/models/Qwen3-8B/", "dest": "/mnt/fast/qwen//", "prune": True},
        ],
        "/srv/models",
    )
    assert out == [
        {
            "name": "smol",
            "source": "hub",
            "dest": "/srv/models/smol",
            "prune": False,
            "repo_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "revision": "main",
            "pinned": False,
            "include": [],
            "exclude": [],
        },
        {
            "name": "pinned",
            "source": "hub",
            "dest": "/srv/models/pinned",
            "prune": False,
            "repo_id": "gpt2",
            "revision": SHA,
            "pinned": True,
            "include": ["*.json"],
            "exclude": ["onnx/"],
        },
        {
            "name": "staged",
            "source": "controller",
            "dest": "/mnt/fast/qwen",
            "prune": True,
            "src": "/data/models/Qwen3-8B",
            "manifest": "auto",
        },
    ]


def test_nothing():
    assert model_cache_models(None, "/srv/models") == []
    assert model_cache_models([], "/srv/models") == []


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("smol", "must be a list"),
        (["smol"], r"model_cache_models\[0\] must be a dict"),
        ([{"repo_id": "a/b"}], "name must match"),
        ([{"name": "../x", "repo_id": "a/b"}], "name must match"),
        ([{"name": "m"}], "say where the model comes from: repo_id .* or src"),
        ([{"name": "m", "repo_id": "a/b", "src": "/x"}], "not both"),
        ([{"name": "m", "source": "s3", "src": "/x"}], "source must be hub or controller"),
        ([{"name": "m", "repo_id": "a/b", "manifest": "auto"}], r"unknown key\(s\) manifest for source hub"),
        ([{"name": "m", "src": "/x", "revison": "main"}], r"unknown key\(s\) revison for source controller"),
        ([{"name": "m", "repo_id": "a b"}], "repo_id must be a Hub repository id"),
        ([{"name": "m", "repo_id": "a/b", "revision": ""}], "revision must be"),
        ([{"name": "m", "repo_id": "a/b", "include": [1]}], "include must be a list of glob patterns"),
        ([{"name": "m", "repo_id": "a/b", "include": "*", "allow_patterns": "*"}], "give include or allow_patterns"),
        ([{"name": "m", "src": ""}], "src must be the absolute path"),
        ([{"name": "m", "src": "models/x"}], r"src must be the absolute path .* '\{\{ playbook_dir \}\}/...'"),
        ([{"name": "m", "src": "/x", "manifest": ""}], "manifest must be 'auto' or the absolute path"),
        ([{"name": "m", "src": "/x", "manifest": "x.sha256"}], "manifest must be 'auto' or the absolute path"),
        ([{"name": "m", "src": "/x", "dest": "relative"}], "dest must be an absolute path"),
        ([{"name": "m", "src": "/x", "dest": "/"}], "dest must be an absolute path below /"),
        ([{"name": "m", "src": "/x", "prune": "yes"}], "prune must be true or false"),
        ([{"name": "m", "src": "/x"}, {"name": "m", "src": "/y", "dest": "/o"}], "have the same name 'm'"),
        ([{"name": "a", "src": "/x", "dest": "/o"}, {"name": "b", "src": "/y", "dest": "/o/"}], "have the same dest"),
        (
            [{"name": "a", "src": "/x", "dest": "/o"}, {"name": "b", "src": "/y", "dest": "/o/b"}],
            "lies inside the dest",
        ),
    ],
)
def test_refused(models, message):
    with pytest.raises(AnsibleFilterError, match=message):
        model_cache_models(models, "/srv/models")


def test_cache_dir_must_be_absolute():
    with pytest.raises(AnsibleFilterError, match="model_cache_dir must be an absolute path"):
        model_cache_models([], "models")
