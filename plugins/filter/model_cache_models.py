# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Normalize the model_cache role's ``model_cache_models`` list."""

from __future__ import annotations

DOCUMENTATION = r"""
name: model_cache_models
short_description: Normalize and check C(model_cache_models) entries for the model_cache role
version_added: 0.1.0
author: gpubox.llm maintainers
description:
  - Fills each model's defaults (its source from the keys given, C(dest) under the cache folder, revision C(main),
    no patterns, manifest C(auto)) and checks the keys, so that a typo fails before any change with the entry and
    the key named.
  - Pure function; it raises an error naming the model and the key on bad input.
positional: _input, cache_dir
options:
  _input:
    description: The C(model_cache_models) list.
    type: list
    elements: dict
    required: true
  cache_dir:
    description: The folder a model's C(dest) defaults to C(<cache_dir>/<name>) in.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Normalize the models
  ansible.builtin.set_fact:
    models: "{{ model_cache_models | gpubox.llm.model_cache_models(model_cache_dir) }}"
"""

RETURN = r"""
_value:
  description:
    - One dict per model with the keys C(name), C(source) (C(hub) or C(controller)), C(dest), C(prune), and for the
      hub C(repo_id), C(revision), C(pinned) (the revision is a commit sha), C(include) and C(exclude), for the
      controller C(src) and C(manifest) (C(auto) or a path on the controller).
  type: list
  elements: dict
"""

import posixpath
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REPO_ID_RE = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
COMMON_KEYS = {"name", "source", "dest", "prune"}
SOURCE_KEYS = {
    "hub": {"repo_id", "revision", "include", "exclude", "allow_patterns", "ignore_patterns"},
    "controller": {"src", "manifest"},
}


def _patterns(model, where, key, alias):
    if key in model and alias in model:
        raise AnsibleFilterError(f"{where}: give {key} or {alias}, not both")
    value = model.get(key, model.get(alias))
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not is_sequence(value) or not all(isinstance(p, str) and p for p in value):
        raise AnsibleFilterError(
            f"{where}: {key} must be a list of glob patterns such as ['*.safetensors'], got {value!r}"
        )
    return list(value)


def _source(model, where):
    source = model.get("source")
    if source is None:
        has_hub, has_src = "repo_id" in model, "src" in model
        if has_hub == has_src:
            raise AnsibleFilterError(
                f"{where}: say where the model comes from: repo_id (a Hugging Face repository) or src (a folder on the "
                "controller)" + (", not both" if has_hub else "")
            )
        return "hub" if has_hub else "controller"
    if source not in SOURCE_KEYS:
        raise AnsibleFilterError(f"{where}: source must be hub or controller, got {source!r}")
    return source


def normalize_model(model, cache_dir, position=0):
    if not isinstance(model, dict):
        raise AnsibleFilterError(f"model_cache_models[{position}] must be a dict, got {type(model).__name__}")
    name = model.get("name")
    where = f"model_cache_models[{position}] ({name or 'unnamed'})"
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise AnsibleFilterError(
            f"{where}: name must match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (it names the folder and the key of "
            f"model_cache_paths), got {name!r}"
        )
    source = _source(model, where)
    unknown = sorted(set(model) - COMMON_KEYS - SOURCE_KEYS[source])
    if unknown:
        allowed = ", ".join(sorted(COMMON_KEYS | SOURCE_KEYS[source]))
        raise AnsibleFilterError(f"{where}: unknown key(s) {', '.join(unknown)} for source {source} (known: {allowed})")
    dest = model.get("dest") or posixpath.join(cache_dir, name)
    if not isinstance(dest, str) or not dest.startswith("/") or posixpath.normpath(dest) == "/":
        raise AnsibleFilterError(f"{where}: dest must be an absolute path below /, got {dest!r}")
    prune = model.get("prune", False)
    if not isinstance(prune, bool):
        raise AnsibleFilterError(f"{where}: prune must be true or false, got {prune!r}")
    out = {"name": name, "source": source, "dest": posixpath.normpath(dest), "prune": prune}
    if source == "hub":
        repo_id = model.get("repo_id")
        if not isinstance(repo_id, str) or not REPO_ID_RE.match(repo_id):
            raise AnsibleFilterError(
                f"{where}: repo_id must be a Hub repository id such as HuggingFaceTB/SmolLM2-135M-Instruct, "
                f"got {repo_id!r}"
            )
        revision = model.get("revision", "main")
        if not isinstance(revision, str) or not revision.strip():
            raise AnsibleFilterError(f"{where}: revision must be a commit sha, a tag or a branch, got {revision!r}")
        out.update(
            repo_id=repo_id,
            revision=revision.strip(),
            pinned=bool(COMMIT_RE.match(revision.strip())),
            include=_patterns(model, where, "include", "allow_patterns"),
            exclude=_patterns(model, where, "exclude", "ignore_patterns"),
        )
    else:
        src = model.get("src")
        if not isinstance(src, str) or not src.strip().startswith("/"):
            raise AnsibleFilterError(
                f"{where}: src must be the absolute path of a model folder on the controller (for a folder beside the "
                f"playbook: '{{{{ playbook_dir }}}}/...'), got {src!r}"
            )
        manifest = model.get("manifest", "auto")
        if not isinstance(manifest, str) or not (manifest.strip() == "auto" or manifest.strip().startswith("/")):
            raise AnsibleFilterError(
                f"{where}: manifest must be 'auto' or the absolute path of a sha256sum file on the controller, "
                f"got {manifest!r}"
            )
        out.update(src=src.rstrip("/") or "/", manifest=manifest.strip())
    return out


def model_cache_models(models, cache_dir):
    if models is None:
        return []
    if not is_sequence(models):
        raise AnsibleFilterError(f"model_cache_models must be a list, got {type(models).__name__}")
    if not isinstance(cache_dir, str) or not cache_dir.startswith("/"):
        raise AnsibleFilterError(f"model_cache_dir must be an absolute path, got {cache_dir!r}")
    out = [normalize_model(model, cache_dir, position) for position, model in enumerate(models)]
    for key in ("name", "dest"):
        seen = {}
        for model in out:
            if model[key] in seen:
                raise AnsibleFilterError(
                    f"model_cache_models: {seen[model[key]]} and {model['name']} have the same {key} {model[key]!r}; "
                    f"each model needs its own {key}"
                )
            seen[model[key]] = model["name"]
    for model in out:
        for other in out:
            if other is not model and other["dest"].startswith(model["dest"] + "/"):
                raise AnsibleFilterError(
                    f"model_cache_models: the dest of {other['name']} ({other['dest']}) lies inside the dest of "
                    f"{model['name']} ({model['dest']}); give each model a folder of its own"
                )
    return out


class FilterModule:
    def filters(self):
        return {"model_cache_models": model_cache_models}
