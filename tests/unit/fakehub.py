"""A Hugging Face Hub on 127.0.0.1 for tests: the model-info API and file downloads, as the real Hub answers them.

``FakeHub`` serves repositories given either as a recorded API answer (a fixture under ``fixtures/hf_hub``: only
the API and ``HEAD`` work, the files have no content) or as real file contents (``add_files``: the API answer is
built from them, and ``hf download`` can download them for real). It records every request, with its
``Authorization`` header, so that tests can check what was sent.

What it imitates, from the Hub and ``huggingface_hub``'s error handling (``hf_raise_for_status``):
- ``GET /api/models/<repo>/revision/<rev>``: 200 with the model info (and ``/tree/<rev>``, the listing that
  ``hf download`` reads), also for gated repositories (their file list
  is public); 401 ``X-Error-Code: RepoNotFound`` for an unknown or private repository without a valid token; 404
  ``X-Error-Code: RevisionNotFound`` for an unknown revision.
- ``HEAD``/``GET /<repo>/resolve/<sha>/<file>``: the file with ``X-Repo-Commit``, ``ETag`` and, for LFS files,
  ``X-Linked-Etag``/``X-Linked-Size``; on a gated repository 401 ``X-Error-Code: GatedRepo`` without a token and 403
  with a token whose account has no access.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "hf_hub"


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, info, contents=None, refs=None, token=None, access=True):
        self.info = info
        self.contents = contents or {}
        self.refs = refs or {}
        self.token = token
        self.access = access


class FakeHub:
    def __init__(self):
        self.repos = {}
        self.requests = []
        self._server = None
        self._thread = None

    # --- repositories ---------------------------------------------------------------------------------------

    def add_info(self, info, *, refs=None, token=None, access=True):
        """A repository from a recorded model-info answer; ``refs`` maps branch names to the commit."""
        info = copy.deepcopy(info)
        self.repos[info["id"]] = _Repo(info, refs=refs or {"main": info["sha"]}, token=token, access=access)
        return info

    def add_files(self, repo_id, files, *, sha="1" * 40, lfs=(), gated=False, token=None, access=True):
        """A repository with real contents ({name: bytes}); names in ``lfs`` are LFS files (sha256 known)."""
        siblings = []
        for name in sorted(files):
            data = files[name]
            entry = {"rfilename": name, "blobId": git_blob_id(data), "size": len(data)}
            if name in lfs:
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        info = {
            "_id": "0" * 24,
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "private": False,
            "disabled": False,
            "gated": gated,
            "siblings": siblings,
        }
        self.repos[repo_id] = _Repo(info, contents=dict(files), refs={"main": sha}, token=token, access=access)
        return info

    # --- server ----------------------------------------------------------------------------------------------

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_HEAD(self):
                hub._handle(self, "HEAD")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # --- requests --------------------------------------------------------------------------------------------

    @staticmethod
    def _send(handler, status, body=b"", headers=None, method="GET"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, str(value))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(body)

    def _authorized(self, repo, auth):
        return repo.token is None or auth == f"Bearer {repo.token}"

    def _handle(self, handler, method):
        path = unquote(urlsplit(handler.path).path)
        auth = handler.headers.get("Authorization", "")
        self.requests.append({"method": method, "path": path, "query": urlsplit(handler.path).query, "auth": auth})
        if path.startswith("/api/models/"):
            return self._api(handler, method, path[len("/api/models/") :], auth)
        if "/resolve/" in path:
            return self._resolve(handler, method, path, auth)
        return self._send(handler, 404, {"error": "Not Found"}, method=method)

    def _api(self, handler, method, rest, auth):
        tree = "/tree/" in rest
        repo_id, revision = [*rest.split("/tree/" if tree else "/revision/", 1), ""][:2]
        repo = self.repos.get(repo_id)
        if repo is None or (repo.info.get("private") and not self._authorized(repo, auth)):
            return self._send(
                handler,
                401,
                {"error": "Repository not found"},
                {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
                method,
            )
        sha = repo.info["sha"]
        if revision and revision != sha and repo.refs.get(revision) != sha:
            return self._send(
                handler,
                404,
                {"error": f"Invalid rev id: {revision}"},
                {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {revision}"},
                method,
            )
        if tree:
            return self._send(handler, 200, self._tree(repo), method=method)
        return self._send(handler, 200, repo.info, method=method)

    @staticmethod
    def _tree(repo):
        """``/api/models/<repo>/tree/<rev>?recursive=true``: what ``hf download`` lists (one page)."""
        entries, folders = [], set()
        for sibling in repo.info["siblings"]:
            parts = sibling["rfilename"].split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
            entry = {
                "type": "file",
                "oid": sibling.get("blobId"),
                "size": sibling["size"],
                "path": sibling["rfilename"],
            }
            if sibling.get("lfs"):
                lfs = sibling["lfs"]
                entry["lfs"] = {"oid": lfs["sha256"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
            entries.append(entry)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        return entries

    def _resolve(self, handler, method, path, auth):
        repo_id, rest = [*path.lstrip("/").split("/resolve/", 1), ""][:2]
        revision, name = [*rest.split("/", 1), ""][:2]
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._send(handler, 401, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, method)
        if repo.info.get("gated"):
            if not auth:
                msg = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated."
                return self._send(
                    handler, 401, {"error": msg}, {"X-Error-Code": "GatedRepo", "X-Error-Message": msg}, method
                )
            if not self._authorized(repo, auth):
                return self._send(
                    handler,
                    401,
                    {"error": "Invalid credentials in Authorization header"},
                    {"X-Error-Message": "Invalid credentials in Authorization header"},
                    method,
                )
            if not repo.access:
                msg = f"Access to model {repo_id} is restricted and you are not in the authorized list."
                return self._send(
                    handler, 403, {"error": msg}, {"X-Error-Code": "GatedRepo", "X-Error-Message": msg}, method
                )
        sha = repo.info["sha"]
        if revision not in (sha, *[r for r, s in repo.refs.items() if s == sha]):
            return self._send(
                handler, 404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}, method
            )
        sibling = next((s for s in repo.info["siblings"] if s["rfilename"] == name), None)
        if sibling is None:
            return self._send(handler, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, method)
        data = repo.contents.get(name, b"")
        headers = {"X-Repo-Commit": sha, "ETag": f'"{sibling.get("blobId", "")}"', "Accept-Ranges": "bytes"}
        if sibling.get("lfs"):
            headers["X-Linked-Etag"] = f'"{sibling["lfs"]["sha256"]}"'
            headers["X-Linked-Size"] = sibling["lfs"]["size"]
        rng = handler.headers.get("Range", "")
        if rng.startswith("bytes=") and method == "GET":
            start = int(rng[len("bytes=") :].split("-")[0] or 0)
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self._send(handler, 206, data[start:], headers, method)
        if method == "HEAD":
            handler.send_response(200)
            for key, value in headers.items():
                handler.send_header(key, str(value))
            handler.send_header("Content-Length", str(sibling.get("size", len(data))))
            handler.end_headers()
            return None
        return self._send(handler, 200, data, headers, method)

    # --- assertions ------------------------------------------------------------------------------------------

    def paths(self):
        return [f"{r['method']} {r['path']}" for r in self.requests]
