#!/usr/bin/python
# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: hf_model_info
short_description: Read a Hugging Face model repository's files, sizes and checksums, and compare them with a folder
description:
  - Asks the Hugging Face Hub API (C(GET <endpoint>/api/models/<repo_id>/revision/<revision>?blobs=true), the request
    behind C(huggingface_hub)'s C(HfApi.model_info(files_metadata=True))) for the commit a revision points to and the
    repository's files with their sizes, and the sha256 of the files stored with Git LFS (the weights).
  - Keeps the files that O(include) and O(exclude) select, with the same rules as C(hf download --include/--exclude)
    (C(huggingface_hub)'s C(filter_repo_objects)), and returns their total size, so that a play can check the free
    disk space before it downloads anything.
  - With O(dest), also says which of them are already there with the right size, the bytes left to download, the free
    space of the filesystem that holds O(dest), and whether the marker file the C(gpubox.llm.model_cache) role writes
    after a complete download records this very commit and selection (RV(up_to_date)).
  - When O(revision) is a full commit sha and the marker in O(dest) records a complete download of it, the module
    answers from the marker without contacting the Hub (RV(from_marker)), so that reruns work offline.
  - Fails, with a message that says what to do, on a gated repository without a token (the token is needed), on a
    token the Hub refuses or whose account has no access yet, on an unknown repository or revision, and when the
    Hub cannot be reached. The token is sent only in the C(Authorization) header and never appears in the result.
version_added: "0.1.0"
options:
  repo_id:
    description: The repository, for example V(HuggingFaceTB/SmolLM2-135M-Instruct).
    type: str
    required: true
  revision:
    description:
      - A commit sha (recommended, the download is then reproducible, and reruns need no network), a tag or a branch.
    type: str
    default: main
  token:
    description:
      - Hugging Face access token, needed for gated and private repositories. Falls back to E(HF_TOKEN).
    type: str
  endpoint:
    description:
      - The Hub's base URL, or a mirror with the same API. Falls back to E(HF_ENDPOINT).
    type: str
    default: https://huggingface.co
  include:
    description:
      - Glob patterns of the files to keep (C(allow_patterns)); empty keeps every file. C(*) also matches C(/), and a
        pattern ending in C(/) means everything under that folder.
    type: list
    elements: str
    default: []
    aliases: [allow_patterns]
  exclude:
    description: Glob patterns of the files to leave out (C(ignore_patterns)), applied after O(include).
    type: list
    elements: str
    default: []
    aliases: [ignore_patterns]
  dest:
    description:
      - The folder the files are, or will be, downloaded to. Need not exist yet.
    type: path
  marker:
    description: Name of the marker file in O(dest).
    type: str
    default: .gpubox-model-cache.json
  check_access:
    description:
      - Send C(HEAD) for one selected file of the commit (C(config.json) when selected), to find out before any
        download whether the token may read a gated or private repository. Gated repositories show their file list to
        anyone; only the files are gated.
    type: bool
    default: true
  timeout:
    description: Seconds one HTTP request may take.
    type: int
    default: 30
  validate_certs:
    description: Whether to validate the endpoint's certificate.
    type: bool
    default: true
  ca_path:
    description: PEM file of CA certificates to validate the endpoint's certificate against (a corporate CA).
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, and does the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The requests are made from the managed node, with its proxy environment (E(https_proxy), E(no_proxy)).
  - All parsing lives in the C(gpubox.llm.hf_hub) module utility.
seealso:
  - name: Hub API
    description: The endpoints of the Hugging Face Hub.
    link: https://huggingface.co/docs/hub/api
  - name: hf download
    description: The CLI the gpubox.llm.model_cache role downloads with.
    link: https://huggingface.co/docs/huggingface_hub/guides/cli
author:
  - gpubox.llm maintainers (@gpubox)
"""

EXAMPLES = r"""
---
- name: Read the files of a pinned commit, and compare them with the cache folder
  gpubox.llm.hf_model_info:
    repo_id: HuggingFaceTB/SmolLM2-135M-Instruct
    revision: "{{ smollm2_commit }}"  # a commit sha of the repository
    include: ["*.json", "*.safetensors", "*.txt"]
    exclude: ["onnx/", "runs/"]
    dest: /srv/models/smollm2
  register: smollm2

- name: Fail early when the disk is too small
  ansible.builtin.assert:
    that: smollm2.bytes_to_download + 2 * 1024**3 <= smollm2.free_bytes
    fail_msg: >-
      {{ smollm2.bytes_to_download | human_readable }} to download,
      {{ smollm2.free_bytes | human_readable }} free

- name: A gated model, through a mirror
  gpubox.llm.hf_model_info:
    repo_id: meta-llama/Llama-3.1-8B-Instruct
    revision: "{{ llama_commit }}"
    token: "{{ vault_hf_token }}"
    endpoint: https://hf-mirror.example.internal
    exclude: ["original/"]
"""

RETURN = r"""
repo_id:
  description: The repository.
  returned: always
  type: str
  sample: HuggingFaceTB/SmolLM2-135M-Instruct
revision:
  description: The revision asked for.
  returned: always
  type: str
  sample: main
sha:
  description: The commit the revision points to.
  returned: always
  type: str
  sample: 0123456789abcdef0123456789abcdef01234567
gated:
  description:
    - V(false), or how access is granted (V(auto) or V(manual)). V(null) when answered from the marker.
  returned: always
  type: raw
  sample: false
private:
  description: Whether the repository is private (V(false) when answered from the marker).
  returned: always
  type: bool
files:
  description: The selected files, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Path inside the repository.
      type: str
      sample: model.safetensors
    size:
      description: Size in bytes.
      type: int
      sample: 269060552
    sha256:
      description: sha256 of the content, for files stored with Git LFS; V(null) for the others.
      type: str
    blob_id:
      description: The git blob id.
      type: str
    lfs:
      description: Whether the file is stored with Git LFS.
      type: bool
file_count:
  description: Number of selected files.
  returned: always
  type: int
total_bytes:
  description: Total size of the selected files.
  returned: always
  type: int
  sample: 272000000
bytes_present:
  description: Bytes of selected files already in O(dest) with the right size (V(0) without O(dest)).
  returned: always
  type: int
bytes_to_download:
  description: RV(total_bytes) less RV(bytes_present).
  returned: always
  type: int
missing:
  description: Selected files not in O(dest) with the right size (all of them without O(dest)).
  returned: always
  type: list
  elements: str
free_bytes:
  description: Free bytes (for unprivileged users) on the filesystem of O(dest), or of its nearest existing parent.
  returned: when O(dest) is set
  type: int
free_path:
  description: The existing folder RV(free_bytes) was measured at.
  returned: when O(dest) is set
  type: str
up_to_date:
  description:
    - Whether O(dest) holds a complete download of this commit and selection (the marker records it and no file is
      missing). V(false) without O(dest).
  returned: always
  type: bool
from_marker:
  description: Whether the answer came from the marker, without contacting the Hub.
  returned: always
  type: bool
access_checked:
  description: Whether a C(HEAD) request for a file proved that the files can be downloaded.
  returned: always
  type: bool
url:
  description: The API URL asked (no token in it).
  returned: when the Hub was asked
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.gpubox.llm.plugins.module_utils.file_manifest import free_bytes
from ansible_collections.gpubox.llm.plugins.module_utils.hf_hub import (
    DEFAULT_ENDPOINT,
    HubClient,
    HubError,
    gated_message,
    is_commit,
    local_state,
    marker_matches,
    read_marker,
)


def _from_marker(params):
    """The answer for a pinned commit whose complete download the marker records, or None."""
    dest, revision = params["dest"], params["revision"]
    if not dest or not is_commit(revision):
        return None
    marker = read_marker(dest, params["marker"])
    if not marker_matches(marker, params["repo_id"], revision, params["include"], params["exclude"]):
        return None
    files = [f for f in marker["files"] if isinstance(f, dict) and "name" in f and isinstance(f.get("size"), int)]
    if len(files) != len(marker["files"]):
        return None
    present, missing = local_state(dest, files)
    if missing:
        return None
    return {
        "sha": revision,
        "gated": None,
        "private": False,
        "files": [
            {
                "name": f["name"],
                "size": f["size"],
                "sha256": f.get("sha256"),
                "blob_id": f.get("blob_id"),
                "lfs": bool(f.get("sha256")),
            }
            for f in files
        ],
        "file_count": len(files),
        "total_bytes": present,
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "repo_id": {"type": "str", "required": True},
            "revision": {"type": "str", "default": "main"},
            "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["HF_TOKEN"])},
            "endpoint": {"type": "str", "default": DEFAULT_ENDPOINT, "fallback": (env_fallback, ["HF_ENDPOINT"])},
            "include": {"type": "list", "elements": "str", "default": [], "aliases": ["allow_patterns"]},
            "exclude": {"type": "list", "elements": "str", "default": [], "aliases": ["ignore_patterns"]},
            "dest": {"type": "path"},
            "marker": {"type": "str", "default": ".gpubox-model-cache.json"},
            "check_access": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 30},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    repo_id, revision, dest = params["repo_id"], params["revision"] or "main", params["dest"]
    result = {"changed": False, "repo_id": repo_id, "revision": revision, "access_checked": False}

    try:
        info = _from_marker(params)
        result["from_marker"] = info is not None
        if info is None:
            client = HubClient(
                endpoint=params["endpoint"],
                token=params["token"],
                timeout=params["timeout"],
                validate_certs=params["validate_certs"],
                ca_path=params["ca_path"],
            )
            info = client.model_info(repo_id, revision, params["include"], params["exclude"])
            info.pop("repo_id", None)
            info.pop("repo_file_count", None)
            if not info["files"]:
                raise HubError(
                    f"include {params['include']} and exclude {params['exclude']} select no file of {repo_id} at "
                    f"{revision}: check the patterns"
                )
            if info["gated"] and not client.has_token:
                raise HubError(gated_message(repo_id, info["gated"], client.endpoint), status=None)
            if params["check_access"]:
                names = [f["name"] for f in info["files"]]
                probe = "config.json" if "config.json" in names else names[0]
                client.check_access(repo_id, info["sha"], probe, info["gated"])
                result["access_checked"] = True
    except HubError as exc:
        module.fail_json(msg=exc.message, status=exc.status, **result)

    result.update(info)
    present, missing = 0, [f["name"] for f in info["files"]]
    if dest:
        present, missing = local_state(dest, info["files"])
        result["free_bytes"], result["free_path"] = free_bytes(dest)
    result["bytes_present"] = present
    result["bytes_to_download"] = info["total_bytes"] - present
    result["missing"] = missing
    marker = read_marker(dest, params["marker"]) if dest else None
    result["up_to_date"] = bool(
        dest and not missing and marker_matches(marker, repo_id, info["sha"], params["include"], params["exclude"])
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
