# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

"""List, hash and check the files of a folder against a sha256 manifest (the format ``sha256sum`` writes).

Runs on targets and on the controller: standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
from fnmatch import fnmatchcase

CHUNK = 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
# "<64 hex><space><space or *><name>": text and binary mode lines of sha256sum; BSD style "SHA256 (name) = hex".
_GNU_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{64}) [ *](.+)$")
_BSD_LINE = re.compile(r"^(\\?)SHA256 \((.+)\) = ([0-9a-fA-F]{64})$")


class ManifestError(Exception):
    """A manifest that cannot be read; the message names the line."""


def normalize_name(name):
    """A path relative to the folder, without a leading ``./`` nor doubled ``/``."""
    while name.startswith("./"):
        name = name[2:]
    return re.sub("/+", "/", name)


def _unescape(name):
    # sha256sum escapes "\" as "\\" and newline as "\n" and then starts the line with "\".
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), name)


def parse_manifest(text, source="the manifest"):
    """{name: lowercase sha256} from sha256sum output; blank lines and ``#`` comments are skipped."""
    entries = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        gnu = _GNU_LINE.match(line)
        bsd = _BSD_LINE.match(line) if not gnu else None
        if gnu:
            escaped, digest, name = gnu.groups()
        elif bsd:
            escaped, name, digest = bsd.groups()
        else:
            raise ManifestError(
                f"{source}, line {number}, is not '<sha256>  <file>' as sha256sum writes it: {line[:120]!r}"
            )
        name = normalize_name(_unescape(name) if escaped else name)
        if name.startswith("/") or name == ".." or name.startswith("../") or "/../" in name:
            raise ManifestError(f"{source}, line {number}: {name!r} is not a path inside the folder")
        if name in entries and entries[name] != digest.lower():
            raise ManifestError(f"{source} lists {name} twice with different checksums")
        entries[name] = digest.lower()
    if not entries:
        raise ManifestError(f"{source} lists no file")
    return entries


def format_manifest(checksums):
    """sha256sum's text for {name: sha256}, sorted by name (``sha256sum -c`` reads it back)."""
    lines = []
    for name in sorted(checksums):
        if "\\" in name or "\n" in name:
            lines.append("\\" + checksums[name] + "  " + name.replace("\\", "\\\\").replace("\n", "\\n"))
        else:
            lines.append(checksums[name] + "  " + name)
    return "".join(line + "\n" for line in lines)


def digest_of(checksums):
    """One sha256 for a whole manifest, independent of how its text was laid out."""
    return hashlib.sha256(format_manifest(checksums).encode("utf-8")).hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def walk(root, exclude=()):
    """{name: os.stat_result} of the regular files under ``root`` (symlinks to files count, followed)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        dirs.sort()
        for entry in sorted(names):
            rel = normalize_name(entry if rel_folder == "." else os.path.join(rel_folder, entry))
            if any(fnmatchcase(rel, pattern) for pattern in exclude):
                continue
            full = os.path.join(folder, entry)
            if os.path.isfile(full):
                found[rel] = os.stat(full)
        # Leave excluded folders (".cache/*") out entirely.
        dirs[:] = [
            d
            for d in dirs
            if not any(
                fnmatchcase(normalize_name(d if rel_folder == "." else os.path.join(rel_folder, d)) + "/", p)
                for p in exclude
            )
        ]
    return found


def fingerprint(stats):
    """A cheap identity of a tree (names, sizes, modification times): equal fingerprints mean nothing was touched."""
    digest = hashlib.sha256()
    for name in sorted(stats):
        st = stats[name]
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", errors="surrogateescape"))
    return digest.hexdigest()


def free_bytes(path):
    """(bytes free to unprivileged users, the existing folder measured) on the filesystem that holds ``path``."""
    probe = os.path.abspath(path)
    while not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize, probe


def compare(found, actual_sums, expected_sums, expected_sizes):
    """(mismatched, missing, extra) of a folder against the expected checksums and sizes.

    ``found`` is {name: size}; ``actual_sums`` {name: sha256} (may be empty when nothing was hashed);
    ``expected_sums`` and ``expected_sizes`` are {name: value}. A file listed in neither is extra.
    """
    expected = set(expected_sums) | set(expected_sizes)
    missing = sorted(name for name in expected if name not in found)
    extra = sorted(name for name in found if name not in expected)
    mismatched = []
    for name in sorted(expected & set(found)):
        size = expected_sizes.get(name)
        if size is not None and found[name] != size:
            mismatched.append({"name": name, "check": "size", "expected": size, "actual": found[name]})
            continue
        want = expected_sums.get(name)
        if want is not None and name in actual_sums and actual_sums[name] != want.lower():
            mismatched.append({"name": name, "check": "sha256", "expected": want.lower(), "actual": actual_sums[name]})
    return mismatched, missing, extra


def describe(path, source, mismatched, missing, extra, *, limit=5):
    """One readable message naming the files, with both checksums of each mismatch."""
    parts = []
    for item in mismatched[:limit]:
        if item["check"] == "size":
            parts.append(f"{item['name']}: {item['actual']} bytes, {source} says {item['expected']}")
        else:
            parts.append(f"{item['name']}: sha256 {item['actual']}, {source} says {item['expected']}")
    if len(mismatched) > limit:
        parts.append(f"and {len(mismatched) - limit} more mismatched files")
    if missing:
        more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
        parts.append(f"missing: {', '.join(missing[:limit])}{more}")
    if extra:
        more = f" and {len(extra) - limit} more" if len(extra) > limit else ""
        parts.append(f"not in {source}: {', '.join(extra[:limit])}{more}")
    return f"{path} does not match {source}: " + "; ".join(parts)
