#!/usr/bin/python
# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: file_manifest
short_description: Check the files of a folder against a sha256 manifest, or write one
description:
  - Lists the regular files under O(path) (recursively; symlinks to files are followed) and computes their sha256.
  - With O(manifest), O(manifest_content), O(checksums) or O(sizes), compares them and fails, unless
    O(fail_on_mismatch=false), naming each file whose checksum or size differs with both values, the files the manifest
    lists that are missing, and (with O(extra=fail)) the files it does not list.
  - Without any of them, returns the checksums and the manifest text in the format C(sha256sum) writes, to verify a
    copy of the folder against later (the C(gpubox.llm.model_cache) role checks a model folder on the controller this
    way, copies it, then checks the copy).
  - O(hash=false) only lists names, sizes and modification times (RV(fingerprint)), a cheap way to tell that nothing
    changed since the last run.
  - The module only reads. A missing O(path) is not an error by itself; the files a manifest lists are then missing.
version_added: "0.1.0"
options:
  path:
    description: The folder.
    type: path
    required: true
  manifest:
    description:
      - A manifest file on the host the module runs on, as C(cd <path> && sha256sum <files>) writes it
        (C(<sha256>  <file>) lines; C(*) binary markers, C(./) prefixes, C(#) comments and BSD-style
        C(SHA256 (file) = <sha256>) lines are accepted). Names are relative to O(path).
      - When the manifest itself lies under O(path), it is not counted as an extra file.
    type: path
  manifest_content:
    description: The manifest's text, instead of O(manifest).
    type: str
  checksums:
    description: The expected sha256 of files, as a dict of relative name to checksum.
    type: dict
  sizes:
    description: The expected sizes of files in bytes, as a dict of relative name to size.
    type: dict
  manifest_name:
    description:
      - What the expectations are called in messages, for example V(the Hub's checksums). By default the manifest's
        path, or V(the manifest).
    type: str
  extra:
    description:
      - What to do with files under O(path) that the expectations do not list. V(report) lists them in RV(extra),
        V(fail) also fails.
    type: str
    choices: [report, fail]
    default: report
  exclude:
    description:
      - Glob patterns of relative paths to leave out (C(*) also matches C(/)); a pattern ending in C(/*) leaves out a
        whole folder. The default leaves out the download state of C(hf download --local-dir) and the
        C(gpubox.llm.model_cache) marker.
    type: list
    elements: str
    default: [".cache/*", ".gpubox-model-cache.json"]
  hash:
    description:
      - Compute sha256 checksums. V(false) only compares names and sizes, and reads no file content.
    type: bool
    default: true
  fail_on_mismatch:
    description: Fail when the folder does not match. V(false) only reports it in RV(ok).
    type: bool
    default: true
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
  - Reading a large model takes time, about a second per GB on a fast disk.
  - Run it with C(delegate_to=localhost) to check a folder on the controller.
seealso:
  - name: sha256sum
    description: The manifest format.
    link: https://www.gnu.org/software/coreutils/manual/html_node/sha2-utilities.html
author:
  - gpubox.llm maintainers (@gpubox)
"""

EXAMPLES = r"""
---
- name: Check a model folder against the manifest shipped with it
  gpubox.llm.file_manifest:
    path: /srv/models/smollm2
    manifest: /srv/models/smollm2.sha256
    extra: fail

- name: Write a manifest of a folder on the controller
  gpubox.llm.file_manifest:
    path: /data/models/SmolLM2-135M-Instruct
  delegate_to: localhost
  register: smollm2_manifest

- name: Check the copy on the host against it
  gpubox.llm.file_manifest:
    path: /srv/models/smollm2
    manifest_content: "{{ smollm2_manifest.manifest }}"

- name: Only tell whether anything changed since the last run
  gpubox.llm.file_manifest:
    path: /srv/models/smollm2
    hash: false
  register: tree
"""

RETURN = r"""
path:
  description: The folder.
  returned: always
  type: str
exists:
  description: Whether O(path) is a folder.
  returned: always
  type: bool
files:
  description: Number of files found (excluded ones left out).
  returned: always
  type: int
  sample: 9
total_bytes:
  description: Their total size.
  returned: always
  type: int
sizes:
  description: The size of each file found, by relative name.
  returned: always
  type: dict
  sample: {config.json: 861, model.safetensors: 269060552}
fingerprint:
  description: sha256 over the sorted names, sizes and modification times of the files found.
  returned: always
  type: str
checksums:
  description:
    - The sha256 of each file found, by relative name. With expectations, only of the files they list with a
      checksum (the others are not read).
  returned: when O(hash=true)
  type: dict
manifest:
  description: RV(checksums) in the format C(sha256sum) writes, sorted by name.
  returned: when O(hash=true)
  type: str
  sample: "3f1e...  config.json\n"
digest:
  description:
    - sha256 of RV(manifest), an identity of the content that does not depend on file times. When the folder matches
      a manifest, it is also the digest of that manifest.
  returned: when O(hash=true)
  type: str
expected:
  description: Number of files the expectations list.
  returned: always
  type: int
ok:
  description:
    - Whether the folder matches the expectations (no mismatch, nothing missing, and no extra file with
      O(extra=fail)). Always V(true) without expectations.
  returned: always
  type: bool
message:
  description:
    - What does not match, naming each file with both checksums or sizes (at most five of each kind); empty when
      RV(ok). The module fails with this message unless O(fail_on_mismatch=false).
  returned: always
  type: str
  sample: "/srv/models/m does not match the manifest /m.sha256: config.json: sha256 0c71..., the manifest says 9f02..."
mismatched:
  description: Files whose checksum or size differs.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Relative name.
      type: str
    check:
      description: V(sha256) or V(size).
      type: str
    expected:
      description: The value expected.
      type: raw
    actual:
      description: The value found.
      type: raw
missing:
  description: Files the expectations list that are not under O(path).
  returned: always
  type: list
  elements: str
bytes_missing:
  description:
    - Bytes the folder lacks to match O(sizes), the expected sizes of the files missing or of another size (V(0)
      without O(sizes)), that is what a copy has to write.
  returned: always
  type: int
extra:
  description: Files under O(path) that the expectations do not list (empty without expectations).
  returned: always
  type: list
  elements: str
free_bytes:
  description: Free bytes (for unprivileged users) on the filesystem of O(path), or of its nearest existing parent.
  returned: always
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.llm.plugins.module_utils.file_manifest import (
    SHA256_RE,
    ManifestError,
    compare,
    describe,
    digest_of,
    fingerprint,
    format_manifest,
    free_bytes,
    normalize_name,
    parse_manifest,
    sha256_file,
    walk,
)


def _expectations(module, root):
    """(checksums, sizes, source) from the options; source is None when nothing is expected."""
    params = module.params
    sums, sizes, source = {}, {}, None
    try:
        if params["manifest"]:
            try:
                with open(params["manifest"], encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                module.fail_json(msg=f"cannot read the manifest {params['manifest']}: {exc.strerror or exc}")
            sums = parse_manifest(text, f"the manifest {params['manifest']}")
            source = f"the manifest {params['manifest']}"
        elif params["manifest_content"] is not None:
            sums = parse_manifest(params["manifest_content"], "the manifest")
            source = "the manifest"
    except ManifestError as exc:
        module.fail_json(msg=str(exc))
    for name, value in (params["checksums"] or {}).items():
        if not isinstance(value, str) or not SHA256_RE.match(value):
            module.fail_json(msg=f"checksums[{name!r}] is not a sha256 (64 hexadecimal digits): {value!r}")
        sums[normalize_name(name)] = value.lower()
        source = source or "the expected checksums"
    for name, value in (params["sizes"] or {}).items():
        try:
            sizes[normalize_name(name)] = int(value)
        except (TypeError, ValueError):
            module.fail_json(msg=f"sizes[{name!r}] is not a number of bytes: {value!r}")
        source = source or "the expected sizes"
    return sums, sizes, source


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "manifest": {"type": "path"},
            "manifest_content": {"type": "str"},
            "checksums": {"type": "dict"},
            "sizes": {"type": "dict"},
            "manifest_name": {"type": "str"},
            "extra": {"type": "str", "choices": ["report", "fail"], "default": "report"},
            "exclude": {"type": "list", "elements": "str", "default": [".cache/*", ".gpubox-model-cache.json"]},
            "hash": {"type": "bool", "default": True},
            "fail_on_mismatch": {"type": "bool", "default": True},
        },
        mutually_exclusive=[("manifest", "manifest_content")],
        supports_check_mode=True,
    )
    params = module.params
    root = params["path"].rstrip("/") or "/"
    exclude = list(params["exclude"])
    if params["manifest"]:
        rel = os.path.relpath(os.path.abspath(params["manifest"]), os.path.abspath(root))
        if not rel.startswith(".."):
            exclude.append(normalize_name(rel))
    expected_sums, expected_sizes, source = _expectations(module, root)
    if source is not None and params["manifest_name"]:
        source = params["manifest_name"]

    exists = os.path.isdir(root)
    if os.path.exists(root) and not exists:
        module.fail_json(msg=f"{root} is not a folder")
    try:
        stats = walk(root, exclude) if exists else {}
        found = {name: st.st_size for name, st in stats.items()}
        # With expectations, only the files they list are read: the rest are extra anyway.
        to_hash = sorted(found) if source is None else sorted(n for n in found if n in expected_sums)
        actual_sums = {name: sha256_file(os.path.join(root, name)) for name in to_hash} if params["hash"] else {}
    except OSError as exc:
        module.fail_json(msg=f"cannot read {exc.filename or root}: {exc.strerror or exc}")

    result = {
        "changed": False,
        "path": root,
        "exists": exists,
        "files": len(found),
        "total_bytes": sum(found.values()),
        "sizes": found,
        "fingerprint": fingerprint(stats),
        "expected": len(set(expected_sums) | set(expected_sizes)),
        "mismatched": [],
        "missing": [],
        "extra": [],
        "bytes_missing": 0,
        "ok": True,
        "message": "",
    }
    result["free_bytes"] = free_bytes(root)[0]
    if params["hash"]:
        result.update(checksums=actual_sums, manifest=format_manifest(actual_sums), digest=digest_of(actual_sums))
    if source is not None:
        mismatched, missing, extra = compare(found, actual_sums, expected_sums, expected_sizes)
        result.update(mismatched=mismatched, missing=missing, extra=extra)
        short = set(missing) | {m["name"] for m in mismatched if m["check"] == "size"}
        result["bytes_missing"] = sum(expected_sizes.get(name, 0) for name in short)
        result["ok"] = not mismatched and not missing and not (extra and params["extra"] == "fail")
        if not result["ok"]:
            result["message"] = describe(root, source, mismatched, missing, extra if params["extra"] == "fail" else [])
            if params["fail_on_mismatch"]:
                module.fail_json(msg=result["message"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
