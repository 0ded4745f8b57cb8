# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

"""Read a model repository's file list from the Hugging Face Hub API and compare it with a local folder.

Runs on targets: standard library and ``ansible.module_utils.urls`` only. The token is only ever sent in the
``Authorization`` header; no message built here contains it.

The API answer (``GET /api/models/<repo>/revision/<revision>?blobs=true``, what ``huggingface_hub``'s
``HfApi.model_info(files_metadata=True)`` reads) looks like::

    {"id": "HuggingFaceTB/SmolLM2-135M-Instruct", "sha": "<40 hex commit>", "private": false,
     "gated": false | "auto" | "manual",
     "siblings": [{"rfilename": "config.json", "blobId": "<git sha1>", "size": 861},
                  {"rfilename": "model.safetensors", "blobId": "...", "size": 269060552,
                   "lfs": {"sha256": "<64 hex>", "size": 269060552, "pointerSize": 135}}]}
"""

from __future__ import annotations

import http.client
import json
import os
import re
from fnmatch import fnmatchcase
from urllib.error import HTTPError, URLError
from urllib.parse import quote

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

DEFAULT_ENDPOINT = "https://huggingface.co"
USER_AGENT = "ansible-gpubox.llm"
MARKER_NAME = ".gpubox-model-cache.json"
BODY_LIMIT = 300
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# "gpt2" (legacy, no namespace) or "namespace/name"; the Hub allows letters, digits, "-", "_" and ".".
REPO_ID_RE = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


class HubError(Exception):
    """A message meant for the user; ``status`` is the HTTP status or None."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status


def is_commit(revision):
    return bool(COMMIT_RE.match(revision or ""))


def _normalize(pattern):
    pattern = pattern.replace("\\", "/")
    return pattern + "*" if pattern.endswith("/") else pattern


def select(names, include=None, exclude=None):
    """The names kept by ``include``/``exclude``, as ``huggingface_hub``'s ``filter_repo_objects`` keeps them.

    Patterns are ``fnmatch`` globs matched case-sensitively against the whole path, where ``*`` also matches ``/``;
    a pattern ending in ``/`` means everything below that folder. No ``include`` keeps every file.
    """
    include = [_normalize(p) for p in include or []]
    exclude = [_normalize(p) for p in exclude or []]
    kept = []
    for name in names:
        path = name.replace("\\", "/")
        if include and not any(fnmatchcase(path, p) for p in include):
            continue
        if any(fnmatchcase(path, p) for p in exclude):
            continue
        kept.append(name)
    return kept


def parse_model_info(data, include=None, exclude=None):
    """The parts of a model-info answer the role needs, with the selected files only."""
    if not isinstance(data, dict):
        raise HubError(f"the Hub's answer is not a JSON object: {str(data)[:BODY_LIMIT]}")
    siblings = data.get("siblings")
    sha = data.get("sha")
    if not isinstance(siblings, list) or not isinstance(sha, str):
        raise HubError("the Hub's answer has no 'sha' or no 'siblings' list: is the endpoint a Hugging Face Hub?")
    files = {}
    for entry in siblings:
        if not isinstance(entry, dict) or not isinstance(entry.get("rfilename"), str):
            continue
        lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else None
        size = entry.get("size")
        if size is None and lfs:
            size = lfs.get("size")
        if not isinstance(size, int):
            raise HubError(
                f"the Hub's answer gives no size for {entry['rfilename']}: it was not asked with blobs=true "
                "(a mirror that ignores it cannot be used for the free-disk check)"
            )
        files[entry["rfilename"]] = {
            "name": entry["rfilename"],
            "size": size,
            "sha256": (lfs or {}).get("sha256"),
            "blob_id": entry.get("blobId"),
            "lfs": lfs is not None,
        }
    selected = [files[n] for n in sorted(select(list(files), include, exclude))]
    gated = data.get("gated", False)
    return {
        "repo_id": data.get("id") or data.get("modelId"),
        "sha": sha,
        "gated": gated if gated in ("auto", "manual") else False,
        "private": bool(data.get("private", False)),
        "files": selected,
        "file_count": len(selected),
        "total_bytes": sum(f["size"] for f in selected),
        "repo_file_count": len(files),
    }


def local_state(dest, files):
    """Which of ``files`` are present under ``dest`` with their size."""
    present, missing = 0, []
    for entry in files:
        path = os.path.join(dest, entry["name"])
        try:
            size = os.path.getsize(path) if os.path.isfile(path) else None
        except OSError:
            size = None
        if size == entry["size"]:
            present += entry["size"]
        else:
            missing.append(entry["name"])
    return present, missing


def read_marker(dest, marker_name=MARKER_NAME):
    """The marker the role writes after a complete download, or None."""
    try:
        with open(os.path.join(dest, marker_name), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def marker_matches(marker, repo_id, sha, include, exclude):
    """Whether ``marker`` records a download of this repository, commit and file selection."""
    return bool(
        marker
        and marker.get("source") == "hub"
        and marker.get("repo_id") == repo_id
        and marker.get("sha") == sha
        and sorted(marker.get("include") or []) == sorted(include or [])
        and sorted(marker.get("exclude") or []) == sorted(exclude or [])
        and isinstance(marker.get("files"), list)
    )


def _excerpt(raw):
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw or "")
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            text = parsed["error"]
    except ValueError:
        pass
    text = " ".join(text.split())
    return text[:BODY_LIMIT] + ("..." if len(text) > BODY_LIMIT else "")


class HubClient:
    """GET and HEAD against one Hub endpoint (``https://huggingface.co`` or a mirror such as ``HF_ENDPOINT``)."""

    def __init__(self, endpoint=DEFAULT_ENDPOINT, token=None, timeout=30, validate_certs=True, ca_path=None):
        endpoint = (endpoint or DEFAULT_ENDPOINT).strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", endpoint):
            raise HubError(f"the Hub endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint = endpoint
        self._token = token or None
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path

    @property
    def has_token(self):
        return self._token is not None

    def _redact(self, text):
        return text.replace(self._token, "********") if self._token else text

    def info_url(self, repo_id, revision):
        return f"{self.endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}?blobs=true"

    def file_url(self, repo_id, sha, name):
        return f"{self.endpoint}/{repo_id}/resolve/{sha}/{quote(name)}"

    def _open(self, url, method):
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = "Bearer " + self._token
        # HEAD on a file: a 3xx (the Hub redirects weights to its CDN) already proves access.
        return open_url(
            url,
            method=method,
            headers=headers,
            timeout=self.timeout,
            validate_certs=self.validate_certs,
            ca_path=self.ca_path,
            http_agent=USER_AGENT,
            use_netrc=False,
            follow_redirects="none" if method == "HEAD" else "safe",
        )

    def request(self, url, method="GET"):
        """(status, headers, body bytes); HTTP errors come back as statuses, connection errors raise HubError."""
        try:
            resp = self._open(url, method)
            try:
                return resp.status, resp.headers, resp.read() if method != "HEAD" else b""
            finally:
                resp.close()
        except HTTPError as exc:
            try:
                raw = exc.read() if exc.fp is not None else b""
            except (OSError, http.client.HTTPException):
                raw = b""
            return exc.code, exc.headers, raw
        except (URLError, OSError, http.client.HTTPException, UrlsConnectionError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise HubError(
                self._redact(
                    f"cannot reach the Hugging Face Hub at {self.endpoint} ({method} {url}): {reason}. "
                    "Behind a proxy, give the proxy environment (https_proxy; the role's model_cache_proxy_env); "
                    "on an air-gapped host, stage the model from the controller instead (source: controller)"
                )
            ) from None

    def model_info(self, repo_id, revision, include=None, exclude=None):
        """``parse_model_info`` of the repository at ``revision``; raises HubError with a readable message."""
        if not REPO_ID_RE.match(repo_id or ""):
            raise HubError(f"repo_id {repo_id!r} is not a Hub repository id such as 'HuggingFaceTB/SmolLM2-135M'")
        url = self.info_url(repo_id, revision)
        status, headers, raw = self.request(url)
        if status != 200:
            raise HubError(self._api_error(repo_id, revision, status, headers, raw), status=status)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise HubError(f"the answer of {url} is not JSON: {_excerpt(raw)}", status=status) from None
        info = parse_model_info(data, include, exclude)
        info["url"] = url
        return info

    def _api_error(self, repo_id, revision, status, headers, raw):
        code = (headers or {}).get("X-Error-Code") or ""
        detail = _excerpt(raw)
        where = f"{self.endpoint}/{repo_id}"
        if code == "RevisionNotFound" or (status == 404 and "rev" in detail.lower()):
            return (
                f"revision {revision!r} does not exist in {repo_id} (HTTP {status}: {detail}). Pin a commit sha, "
                f"a tag or a branch listed at {where}/commits/main"
            )
        if status in (401, 403, 404):
            if not self.has_token:
                return (
                    f"{repo_id} was not found on {self.endpoint} (HTTP {status}: {detail}). Check the repository id; "
                    "if the repository is private or gated, a Hugging Face token is needed: set the token "
                    "(model_cache_hf_token, kept in a vault)"
                )
            return (
                f"{repo_id} was not found on {self.endpoint} with the token given (HTTP {status}: {detail}). Check the "
                "repository id, and that the token is valid and its account may read the repository"
            )
        return self._redact(f"the Hub answered HTTP {status} for {repo_id} at {revision}: {detail}")

    def check_access(self, repo_id, sha, name, gated):
        """HEAD one file of the commit: proves the token (if any) may download from a gated or private repository."""
        url = self.file_url(repo_id, sha, name)
        status, headers, raw = self.request(url, method="HEAD")
        if 200 <= status < 400:
            return status
        code = (headers or {}).get("X-Error-Code") or ""
        message = (headers or {}).get("X-Error-Message") or _excerpt(raw)
        if gated and not self.has_token:
            raise HubError(gated_message(repo_id, gated, self.endpoint), status=status)
        if status == 401:
            raise HubError(
                f"the Hub refused {'the token' if self.has_token else 'to serve without a token'} for {repo_id} "
                f"(HTTP 401: {message}): "
                + (
                    "the token is invalid or expired. Set a valid token (model_cache_hf_token)"
                    if self.has_token
                    else "the repository is private or gated, so the token is needed: set model_cache_hf_token"
                ),
                status=status,
            )
        if code == "GatedRepo" or status == 403:
            raise HubError(
                f"{repo_id} is gated and the token's account has no access to it yet (HTTP {status}: {message}). "
                f"Accept the conditions at {self.endpoint}/{repo_id} with that account, or use a token of an account "
                "that has access",
                status=status,
            )
        raise HubError(self._redact(f"HEAD {url} answered HTTP {status}: {message}"), status=status)


def gated_message(repo_id, gated, endpoint=DEFAULT_ENDPOINT):
    return (
        f"{repo_id} is gated (gated: {gated}): set model_cache_hf_token (the token is needed): a Hugging Face token "
        f"of an account that accepted the conditions at {endpoint.rstrip('/')}/{repo_id}, kept in a vault. The role "
        "never prints the token"
    )
