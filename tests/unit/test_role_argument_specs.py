"""meta/argument_specs.yml is the single source of variable documentation: keep defaults in step."""

from __future__ import annotations

import pathlib

import pytest
import yaml

ROLES = sorted(p for p in (pathlib.Path(__file__).parents[2] / "roles").iterdir() if p.is_dir())


def _load(path):
    with path.open() as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_specs(role):
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = _load(role / "defaults" / "main.yml") if (role / "defaults" / "main.yml").exists() else {}

    assert sorted(defaults) == sorted(k for k, v in specs.items() if "default" in v or k in defaults), (
        "defaults/main.yml and meta/argument_specs.yml list different variables"
    )
    for key, spec in specs.items():
        assert key.startswith(role.name + "_"), f"{key} lacks the role prefix {role.name}_"
        assert spec.get("description"), f"{key} has no description"
        if key in defaults:
            assert spec.get("default") == defaults[key], f"{key}: argument_specs default differs from defaults/main.yml"
