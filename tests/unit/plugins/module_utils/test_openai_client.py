"""Tests for openai_client against a real local HTTP server that imitates vLLM."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.gpubox.llm.plugins.module_utils.openai_client import (
    OpenAIClient,
    OpenAIConnectionError,
    OpenAIHTTPError,
    OpenAIResponseError,
    normalize_base_url,
)

SECRET = "sk-test-5ecret-Key"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeVLLM:
    """vLLM look-alike on 127.0.0.1.

    start_delay: seconds before the port is bound (connection refused until then).
    warmup: seconds after binding during which every endpoint answers ``warmup_status``.
    """

    def __init__(
        self,
        models=("facebook/opt-125m",),
        *,
        api_key=None,
        start_delay=0.0,
        warmup=0.0,
        warmup_status=503,
        completion_status=200,
        embedding_status=200,
        hang=0.0,
        models_body=None,
    ):
        self.models = list(models)
        self.api_key = api_key
        self.start_delay = start_delay
        self.warmup = warmup
        self.warmup_status = warmup_status
        self.completion_status = completion_status
        self.embedding_status = embedding_status
        self.hang = hang
        self.models_body = models_body
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = []
        self.bound_at = None
        self._httpd = None
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # HTTP side

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, payload=None, raw=None):
                body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (request timeout tests)

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append(
                    {"method": method, "path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if fake.hang:
                    time.sleep(fake.hang)
                if time.monotonic() - fake.bound_at < fake.warmup:
                    return self._send(fake.warmup_status, {"error": "starting"})
                if self.path == "/health" and method == "GET":
                    return self._send(200)
                if not self.path.startswith("/v1/"):
                    return self._send(404, {"detail": "Not Found"})
                if fake.api_key and self.headers.get("Authorization") != "Bearer " + fake.api_key:
                    return self._send(401, {"error": "Unauthorized"})
                if self.path == "/v1/models" and method == "GET":
                    if fake.models_body is not None:
                        return self._send(200, raw=fake.models_body)
                    data = [{"id": m, "object": "model", "owned_by": "vllm"} for m in fake.models]
                    return self._send(200, {"object": "list", "data": data})
                if self.path in ("/v1/completions", "/v1/chat/completions") and method == "POST":
                    if body.get("model") not in fake.models:
                        msg = f"The model `{body.get('model')}` does not exist."
                        return self._send(404, {"error": {"message": msg, "type": "NotFoundError", "code": 404}})
                    if fake.completion_status != 200:
                        err = {"message": "boom", "code": fake.completion_status}
                        return self._send(fake.completion_status, {"error": err})
                    if self.path == "/v1/completions":
                        choice = {"index": 0, "text": " pong", "finish_reason": "length"}
                        obj = "text_completion"
                    else:
                        choice = {"index": 0, "message": {"role": "assistant", "content": "pong"}}
                        obj = "chat.completion"
                    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                    return self._send(
                        200,
                        {"id": "cmpl-1", "object": obj, "model": body["model"], "choices": [choice], "usage": usage},
                    )
                if self.path == "/v1/embeddings" and method == "POST":
                    if body.get("model") not in fake.models:
                        msg = f"The model `{body.get('model')}` does not exist."
                        return self._send(404, {"error": {"message": msg, "type": "NotFoundError", "code": 404}})
                    if fake.embedding_status != 200:
                        return self._send(fake.embedding_status, {"error": {"message": "boom"}})
                    item = {"object": "embedding", "index": 0, "embedding": [0.125, -0.5, 0.25]}
                    return self._send(200, {"object": "list", "model": body["model"], "data": [item]})
                return self._send(404, {"detail": "Not Found"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        return Handler

    def _bind(self):
        if self.start_delay and self._stop.wait(self.start_delay):
            return
        with self._lock:
            if self._stop.is_set():
                return
            self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
            self._httpd.daemon_threads = True
            self.bound_at = time.monotonic()
        self._httpd.serve_forever(poll_interval=0.05)

    # lifecycle

    def start(self):
        self._thread = threading.Thread(target=self._bind, daemon=True)
        self._thread.start()
        if not self.start_delay:
            while self.bound_at is None:
                time.sleep(0.005)
        return self

    def stop(self):
        with self._lock:
            self._stop.set()
            httpd = self._httpd
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@pytest.mark.parametrize(
    "given, expected",
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000"),
        (" https://llm.example.com/prefix/v1 ", "https://llm.example.com/prefix"),
    ],
)
def test_normalize_base_url(given, expected):
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["", "127.0.0.1:8000", "ftp://host", "http://", "http:///v1", None])
def test_normalize_base_url_rejects(bad):
    with pytest.raises(ValueError):
        normalize_base_url(bad)


def test_health_models_completion_chat():
    with FakeVLLM(models=("m1", "m2")) as srv:
        client = OpenAIClient(srv.url + "/v1/", timeout=5)
        health = client.health()
        assert health.status == 200 and health.data is None
        assert 0 < health.latency_ms < 5000

        models = client.models()
        assert models.status == 200
        assert models.ids == ["m1", "m2"]
        assert models.data["object"] == "list"

        comp = client.completion("m2", "hi", max_tokens=1)
        assert comp.status == 200
        assert comp.data["choices"][0]["text"] == " pong"
        assert srv.requests[-1]["body"] == {"model": "m2", "prompt": "hi", "max_tokens": 1}
        assert srv.requests[-1]["path"] == "/v1/completions"

        chat = client.chat("m1", [{"role": "user", "content": "hi"}], max_tokens=2, temperature=0)
        assert chat.data["choices"][0]["message"]["content"] == "pong"
        assert srv.requests[-1]["body"]["temperature"] == 0
        assert srv.requests[-1]["body"]["max_tokens"] == 2
        assert chat.as_dict()["status"] == 200


def test_bearer_key_sent_and_accepted():
    with FakeVLLM(api_key=SECRET) as srv:
        client = OpenAIClient(srv.url, api_key=SECRET, timeout=5)
        assert client.models().ids == ["facebook/opt-125m"]
        assert srv.requests[-1]["auth"] == "Bearer " + SECRET
        assert client.has_api_key


def test_no_key_means_no_authorization_header():
    with FakeVLLM() as srv:
        client = OpenAIClient(srv.url, timeout=5)
        client.health()
        assert srv.requests[-1]["auth"] is None
        assert not client.has_api_key


def test_wrong_key_is_http_error_without_key():
    wrong = "sk-wrong-" + SECRET
    with FakeVLLM(api_key=SECRET) as srv:
        client = OpenAIClient(srv.url, api_key=wrong, timeout=5)
        with pytest.raises(OpenAIHTTPError) as err:
            client.models()
    exc = err.value
    assert exc.status == 401
    assert "Unauthorized" in exc.body
    assert "401" in str(exc) and "/v1/models" in str(exc)
    assert wrong not in str(exc) and wrong not in exc.body and SECRET not in str(exc)


def test_key_echoed_in_body_is_redacted():
    body = json.dumps({"object": "list", "debug": "got " + SECRET}).encode()
    with FakeVLLM(models_body=body) as srv:
        client = OpenAIClient(srv.url, api_key=SECRET, timeout=5)
        with pytest.raises(OpenAIResponseError) as err:
            client.models()
    assert SECRET not in str(err.value) and SECRET not in err.value.body
    assert "********" in err.value.body


def test_http_503_and_404():
    with FakeVLLM(warmup=30) as srv:
        client = OpenAIClient(srv.url, timeout=5)
        with pytest.raises(OpenAIHTTPError) as err:
            client.health()
        assert err.value.status == 503
    with FakeVLLM() as srv:
        client = OpenAIClient(srv.url, timeout=5)
        with pytest.raises(OpenAIHTTPError) as err:
            client.completion("nope", "hi")
        assert err.value.status == 404
        assert "does not exist" in err.value.body


def test_body_is_truncated():
    with FakeVLLM(models_body=b"x" * 10000) as srv:
        client = OpenAIClient(srv.url, timeout=5)
        with pytest.raises(OpenAIResponseError) as err:
            client.models()
    assert err.value.status == 200
    assert len(err.value.body) < 2100
    assert "truncated" in err.value.body


def test_connection_refused():
    port = free_port()
    client = OpenAIClient(f"http://127.0.0.1:{port}", api_key=SECRET, timeout=2)
    with pytest.raises(OpenAIConnectionError) as err:
        client.health()
    exc = err.value
    assert exc.status is None
    assert "refused" in exc.reason.lower()
    assert "/health" in str(exc) and "refused" in str(exc).lower()
    assert SECRET not in str(exc)


def test_request_timeout():
    with FakeVLLM(hang=1.0) as srv:
        client = OpenAIClient(srv.url, timeout=0.2)
        start = time.monotonic()
        with pytest.raises(OpenAIConnectionError) as err:
            client.health()
        assert time.monotonic() - start < 0.9
    assert "timed out" in err.value.reason


def test_slow_start_then_serves():
    with FakeVLLM(start_delay=0.3) as srv:
        client = OpenAIClient(srv.url, timeout=2)
        with pytest.raises(OpenAIConnectionError):
            client.health()
        time.sleep(0.5)
        assert client.health().status == 200
