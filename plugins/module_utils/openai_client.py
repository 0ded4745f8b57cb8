# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

"""Minimal HTTP client for OpenAI-compatible servers such as vLLM.

Runs on targets: standard library and ``ansible.module_utils.urls`` only.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.error import HTTPError, URLError

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

BODY_LIMIT = 2000
USER_AGENT = "ansible-gpubox.llm"
REDACTED = "********"


def _truncate(text, limit=BODY_LIMIT):
    if text is None:
        return ""
    if len(text) > limit:
        return f"{text[:limit]}...(truncated, {len(text)} characters in all)"
    return text


def _decode(raw):
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw)


def _error_reason(exc):
    """Readable text for a connection-level error, e.g. ``[Errno 111] Connection refused``."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, URLError) and reason is not None:
        exc = reason
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "timeout":
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text


def normalize_base_url(url):
    """Return the server root (no trailing ``/`` nor ``/v1``); raise ValueError if unusable."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("the server URL must be a non-empty string")
    root = url.strip().rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")].rstrip("/")
    scheme, sep, rest = root.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise ValueError(f"the server URL must look like http(s)://host[:port][/prefix], got {url!r}")
    return root


class OpenAIClientError(Exception):
    """Base class; ``status`` is the HTTP status or None, ``body`` the (truncated) response body."""

    def __init__(self, message, url=None, status=None, body=""):
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status
        self.body = body


class OpenAIHTTPError(OpenAIClientError):
    """The server answered with a non-2xx status."""


class OpenAIConnectionError(OpenAIClientError):
    """No HTTP answer: refused, reset, timed out, TLS or DNS failure. ``reason`` holds the text."""

    def __init__(self, message, url=None, reason=""):
        super().__init__(message, url=url)
        self.reason = reason


class OpenAIResponseError(OpenAIClientError):
    """A 2xx answer whose body is not the JSON that was expected."""


class OpenAIResponse:
    """One answer: ``status``, parsed JSON ``data`` (None if empty), ``latency_ms`` and raw ``text``.

    ``ids`` is the list of model ids for a ``/v1/models`` answer, else None.
    """

    def __init__(self, status, data, latency_ms, text="", ids=None):
        self.status = status
        self.data = data
        self.latency_ms = latency_ms
        self.text = text
        self.ids = ids

    def as_dict(self):
        result = {"status": self.status, "data": self.data, "latency_ms": self.latency_ms}
        if self.ids is not None:
            result["ids"] = self.ids
        return result

    def __repr__(self):
        return f"OpenAIResponse(status={self.status!r}, latency_ms={self.latency_ms!r})"


class OpenAIClient:
    """Talk to an OpenAI-compatible server.

    ``base_url`` may be given with or without a trailing ``/v1``. The API key is sent as a
    Bearer token and never appears in exception messages.
    """

    def __init__(self, base_url, api_key=None, *, timeout=30.0, validate_certs=True, ca_path=None, use_proxy=True):
        self.base_url = normalize_base_url(base_url)
        self.api_url = self.base_url + "/v1"
        self._api_key = api_key or None
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy

    @property
    def has_api_key(self):
        return self._api_key is not None

    def url_for(self, path):
        """Absolute URL; ``path`` is relative to the server root, e.g. ``/health`` or ``/v1/models``."""
        return self.base_url + "/" + path.lstrip("/")

    def _redact(self, text):
        if self._api_key and text:
            text = text.replace(self._api_key, REDACTED)
        return text

    def request(self, method, path, payload=None, timeout=None, expect_json=True):
        """Send one request; return OpenAIResponse or raise an OpenAIClientError subclass."""
        url = self.url_for(path)
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = "Bearer " + self._api_key
        timeout = self.timeout if timeout is None else timeout

        start = time.monotonic()
        try:
            resp = open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                use_proxy=self.use_proxy,
                http_agent=USER_AGENT,
                use_netrc=False,
            )
            try:
                status = resp.status
                raw = resp.read()
            finally:
                resp.close()
        except HTTPError as exc:
            try:
                raw = exc.read() if exc.fp is not None else b""
            except (OSError, http.client.HTTPException):
                raw = b""
            body = self._redact(_truncate(_decode(raw)))
            msg = f"HTTP {exc.code} from {method} {url}"
            if body:
                msg += ": " + body
            raise OpenAIHTTPError(msg, url=url, status=exc.code, body=body) from None
        except (URLError, OSError, http.client.HTTPException, UrlsConnectionError) as exc:
            reason = self._redact(_error_reason(exc))
            msg = f"cannot reach {method} {url}: {reason}"
            raise OpenAIConnectionError(msg, url=url, reason=reason) from None
        latency_ms = round((time.monotonic() - start) * 1000.0, 3)

        text = _decode(raw)
        parsed = None
        if text.strip():
            try:
                parsed = json.loads(text)
            except ValueError:
                if expect_json:
                    body = self._redact(_truncate(text))
                    msg = f"HTTP {status} from {method} {url} is not JSON: {body}"
                    raise OpenAIResponseError(msg, url=url, status=status, body=body) from None
        elif expect_json:
            msg = f"HTTP {status} from {method} {url} has an empty body, expected JSON"
            raise OpenAIResponseError(msg, url=url, status=status)
        return OpenAIResponse(status, parsed, latency_ms, text)

    def health(self, timeout=None):
        """GET /health (vLLM answers 200 with an empty body once the engine is up)."""
        return self.request("GET", "/health", timeout=timeout, expect_json=False)

    def models(self, timeout=None):
        """GET /v1/models; the served model ids, in server order, are in ``response.ids``."""
        resp = self.request("GET", "/v1/models", timeout=timeout)
        if not isinstance(resp.data, dict) or not isinstance(resp.data.get("data"), list):
            url = self.url_for("/v1/models")
            msg = f"HTTP {resp.status} from GET {url} lacks a 'data' list"
            raise OpenAIResponseError(msg, url=url, status=resp.status, body=self._redact(_truncate(resp.text)))
        resp.ids = [m["id"] for m in resp.data["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        return resp

    def completion(self, model, prompt, max_tokens=1, timeout=None, **kwargs):
        """POST /v1/completions."""
        payload = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
        payload.update(kwargs)
        return self.request("POST", "/v1/completions", payload=payload, timeout=timeout)

    def embeddings(self, model, text, timeout=None, **kwargs):
        """POST /v1/embeddings; ``text`` is a string or a list of strings."""
        payload = {"model": model, "input": text}
        payload.update(kwargs)
        return self.request("POST", "/v1/embeddings", payload=payload, timeout=timeout)

    def chat(self, model, messages, timeout=None, **kwargs):
        """POST /v1/chat/completions; extra keyword arguments go into the request body."""
        payload = {"model": model, "messages": messages}
        payload.update(kwargs)
        return self.request("POST", "/v1/chat/completions", payload=payload, timeout=timeout)
