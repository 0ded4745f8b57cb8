"""vllm_health against a real local HTTP server that imitates vLLM."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from ansible_collections.gpubox.llm.plugins.modules import vllm_health

from ..module_utils.test_openai_client import SECRET, FakeVLLM, free_port
from .utils import run_module

FAST = {"interval": 0.05, "request_timeout": 2}


def run(url, check_mode=False, **args):
    params = dict(FAST, url=url)
    params.update(args)
    return run_module(vllm_health.main, params, check_mode=check_mode)


def paths(srv):
    return [r["path"] for r in srv.requests]


def test_completion_probe_ready_at_once():
    with FakeVLLM(models=("qwen", "other")) as srv:
        result, failed = run(srv.url, served_model_name="qwen", timeout=10)
    assert not failed, result
    assert result["ready"] is True and result["changed"] is False
    assert result["models"] == ["qwen", "other"]
    assert result["model"] == "qwen"
    assert result["status"] == 200
    assert result["attempts"] == 1
    assert 0 < result["probe_latency_ms"] < 2000
    assert 0 <= result["waited_s"] < 1
    assert paths(srv) == ["/v1/models", "/v1/completions"]
    body = srv.requests[-1]["body"]
    assert body["model"] == "qwen" and body["max_tokens"] == 1


def test_completion_probe_defaults_to_first_model():
    with FakeVLLM(models=("first", "second")) as srv:
        result, failed = run(srv.url + "/v1/", timeout=5)
    assert not failed, result
    assert result["model"] == "first"
    assert srv.requests[-1]["body"]["model"] == "first"


def test_health_probe_only_hits_health():
    with FakeVLLM(api_key=SECRET) as srv:
        result, failed = run(srv.url, probe="health", timeout=5)
    assert not failed, result
    assert result["ready"] is True
    assert result["models"] == []
    assert "model" not in result
    assert paths(srv) == ["/health"]
    assert result["probe_latency_ms"] > 0


def test_models_probe():
    with FakeVLLM(models=("a", "b"), api_key=SECRET) as srv:
        result, failed = run(srv.url, probe="models", api_key=SECRET, served_model_name="b", timeout=5)
    assert not failed, result
    assert result["models"] == ["a", "b"]
    assert paths(srv) == ["/v1/models"]
    assert srv.requests[0]["auth"] == "Bearer " + SECRET


def test_slow_start_connection_refused_then_ready():
    with FakeVLLM(start_delay=0.4) as srv:
        result, failed = run(srv.url, served_model_name="facebook/opt-125m", timeout=10)
    assert not failed, result
    assert result["ready"] is True
    assert result["attempts"] > 2
    # Ready soon after the server binds (well within a second).
    assert 0.35 <= result["waited_s"] < 1.2


def test_503_then_200():
    with FakeVLLM(warmup=0.4) as srv:
        result, failed = run(srv.url, probe="health", timeout=10)
    assert not failed, result
    assert result["status"] == 200
    # The warm-up clock starts when the port is bound, a moment before the module starts: only the 503s prove
    # that it waited, and the upper bound that it stopped soon after.
    assert result["waited_s"] < 1.2
    assert result["attempts"] > 2
    assert [r["path"] for r in srv.requests].count("/health") == result["attempts"]


def test_wrong_model_fails_at_once():
    with FakeVLLM(models=("served-a", "served-b")) as srv:
        result, failed = run(srv.url, served_model_name="missing", timeout=30)
    assert failed
    assert "'missing'" in result["msg"]
    assert "'served-a'" in result["msg"] and "'served-b'" in result["msg"]
    assert result["models"] == ["served-a", "served-b"]
    assert result["ready"] is False
    assert result["waited_s"] < 1
    assert "/v1/completions" not in paths(srv)


def test_wrong_model_fails_as_soon_as_models_answer():
    with FakeVLLM(start_delay=0.3, warmup=0.2) as srv:
        result, failed = run(srv.url, served_model_name="missing", timeout=30)
    assert failed
    assert "facebook/opt-125m" in result["msg"]
    assert 0.45 <= result["waited_s"] < 1.5


def test_wrong_model_with_health_probe():
    with FakeVLLM() as srv:
        result, failed = run(srv.url, probe="health", served_model_name="missing", timeout=30)
    assert failed
    assert "facebook/opt-125m" in result["msg"]
    assert paths(srv) == ["/health", "/v1/models"]


def test_401_without_key_fails_at_once():
    with FakeVLLM(api_key=SECRET) as srv:
        result, failed = run(srv.url, timeout=30)
    assert failed
    assert result["status"] == 401
    assert "401" in result["msg"] and "none was given" in result["msg"]
    assert result["waited_s"] < 1
    assert result["attempts"] == 1


def test_401_wrong_key_fails_at_once_without_key():
    wrong = "sk-wrong-key-" + SECRET[::-1]
    with FakeVLLM(api_key=SECRET) as srv:
        result, failed = run(srv.url, api_key=wrong, timeout=30)
    assert failed
    assert "rejected" in result["msg"]
    assert result["waited_s"] < 1
    dumped = json.dumps(result)
    assert wrong not in dumped and SECRET not in dumped


def test_403_fails_at_once():
    with FakeVLLM(warmup=30, warmup_status=403) as srv:
        result, failed = run(srv.url, probe="health", api_key=SECRET, timeout=30)
    assert failed
    assert "403" in result["msg"] and "rejected" in result["msg"]
    assert SECRET not in json.dumps(result)


def test_connection_refused_until_timeout():
    url = f"http://127.0.0.1:{free_port()}"
    result, failed = run(url, api_key=SECRET, timeout=1)
    assert failed
    msg = result["msg"]
    assert msg.startswith(f"waited 1s for {url}/v1/models")
    assert "refused" in msg.lower()
    assert "last error" in msg
    assert SECRET not in msg
    assert result["status"] is None
    assert result["ready"] is False
    assert 1.0 <= result["waited_s"] < 2.0
    assert result["attempts"] > 5


def test_health_probe_timeout_message():
    port = free_port()
    result, failed = run(f"http://127.0.0.1:{port}/v1", probe="health", timeout=1)
    assert failed
    assert f"for http://127.0.0.1:{port}/health to return 200" in result["msg"]


def test_503_forever_times_out_with_status():
    with FakeVLLM(warmup=30) as srv:
        result, failed = run(srv.url, probe="health", timeout=1)
    assert failed
    assert "HTTP 503" in result["msg"]
    assert result["status"] == 503


def test_completion_500_keeps_waiting_then_reports():
    with FakeVLLM(completion_status=500) as srv:
        result, failed = run(srv.url, timeout=1)
    assert failed
    assert "/v1/completions to answer a 1-token completion" in result["msg"]
    assert "HTTP 500" in result["msg"]
    assert result["models"] == ["facebook/opt-125m"]
    assert paths(srv).count("/v1/completions") > 2


def test_completion_400_fails_at_once():
    with FakeVLLM(completion_status=400) as srv:
        result, failed = run(srv.url, timeout=30)
    assert failed
    assert "HTTP 400" in result["msg"]
    assert result["waited_s"] < 1


def test_empty_model_list_keeps_waiting():
    with FakeVLLM(models=()) as srv:
        result, failed = run(srv.url, probe="models", timeout=1)
    assert failed
    assert "lists no models" in result["msg"]


def test_request_timeout_is_retried():
    with FakeVLLM(hang=1.5) as srv:
        result, failed = run(srv.url, probe="health", timeout=1, request_timeout=0.2)
    assert failed
    assert "timed out" in result["msg"]
    assert result["waited_s"] < 2.5


def test_timeout_zero_makes_one_attempt():
    result, failed = run(f"http://127.0.0.1:{free_port()}", timeout=0)
    assert failed
    assert result["attempts"] == 1


def test_check_mode_runs_the_probe():
    with FakeVLLM() as srv:
        result, failed = run(srv.url, check_mode=True, timeout=5)
    assert not failed, result
    assert result["ready"] is True and result["changed"] is False
    assert "/v1/completions" in paths(srv)


# --- systemd_unit: a fake systemctl on PATH prints the contents of a state file the test rewrites.

UNIT = "vllm@test.service"
FAKE_SYSTEMCTL = """#!/bin/sh
here=$(dirname "$0")
printf '%s\\n' "$*" >> "$here/calls"
if [ -f "$here/rc" ]; then
  echo "Failed to connect to bus: Host is down" >&2
  exit "$(cat "$here/rc")"
fi
cat "$here/state"
"""


def unit_state(*, active="activating", sub="start", restarts=0, status=0, result="success", load="loaded"):
    return (
        f"LoadState={load}\nActiveState={active}\nSubState={sub}\nResult={result}\n"
        f"ExecMainStatus={status}\nNRestarts={restarts}\n"
    )


class FakeSystemctl:
    def __init__(self, bindir):
        self.bindir = bindir
        self.timers = []

    def set(self, **kwargs):
        (self.bindir / "state").write_text(unit_state(**kwargs))

    def set_later(self, delay, **kwargs):
        timer = threading.Timer(delay, self.set, kwargs=kwargs)
        self.timers.append(timer)
        timer.start()

    def fail_with(self, rc):
        (self.bindir / "rc").write_text(str(rc))

    @property
    def calls(self):
        path = self.bindir / "calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    fake = FakeSystemctl(bindir)
    fake.set()
    yield fake
    for timer in fake.timers:
        timer.cancel()


def test_unit_restarted_fails_fast(systemctl):
    url = f"http://127.0.0.1:{free_port()}"
    systemctl.set_later(0.3, restarts=1, status=1, result="exit-code")
    began = time.monotonic()
    result, failed = run(url, systemd_unit=UNIT, timeout=30)
    assert failed
    assert time.monotonic() - began < 2
    assert 0.25 <= result["waited_s"] < 2
    msg = result["msg"]
    assert msg.startswith(f"systemd unit {UNIT} crashed and was restarted by systemd (NRestarts 0 -> 1)")
    assert f"while the module was waiting for {url}/v1/models" in msg
    assert "probe=completion" in msg and "refused" in msg.lower()
    assert "ActiveState=activating, SubState=start, Result=exit-code, ExecMainStatus=1, NRestarts=1" in msg
    assert f"journalctl -u {UNIT}" in msg
    assert result["ready"] is False
    assert result["unit_state"] == {
        "LoadState": "loaded",
        "ActiveState": "activating",
        "SubState": "start",
        "Result": "exit-code",
        "ExecMainStatus": 1,
        "NRestarts": 1,
    }
    calls = systemctl.calls
    assert calls[0] == f"show --property=LoadState,ActiveState,SubState,Result,ExecMainStatus,NRestarts -- {UNIT}"
    # One read at the start, then at most one per failed probe.
    assert 2 <= len(calls) <= result["attempts"]


def test_unit_restart_counter_counts_from_the_start(systemctl):
    """A unit that systemd restarted before the module started is fine until it restarts again."""
    systemctl.set(restarts=3)
    systemctl.set_later(0.3, restarts=4)
    result, failed = run(f"http://127.0.0.1:{free_port()}", probe="health", systemd_unit=UNIT, timeout=30)
    assert failed
    assert "NRestarts 3 -> 4" in result["msg"]
    assert 0.25 <= result["waited_s"] < 2


def test_unit_failed_fails_at_once(systemctl):
    systemctl.set(active="failed", sub="failed", result="exit-code", status=127)
    url = f"http://127.0.0.1:{free_port()}"
    result, failed = run(url, probe="health", systemd_unit=UNIT, timeout=30)
    assert failed
    assert result["attempts"] == 1
    assert result["waited_s"] < 1
    msg = result["msg"]
    assert msg.startswith(f"systemd unit {UNIT} crashed (ActiveState=failed) while the module was waiting for {url}")
    assert "ActiveState=failed, SubState=failed, Result=exit-code, ExecMainStatus=127, NRestarts=0" in msg
    assert f"journalctl -u {UNIT}" in msg
    assert result["unit_state"]["ActiveState"] == "failed"
    assert result["unit_state"]["ExecMainStatus"] == 127


def test_unit_fails_later_while_server_is_down(systemctl):
    systemctl.set_later(0.3, active="failed", sub="failed", result="start-limit-hit")
    result, failed = run(f"http://127.0.0.1:{free_port()}", systemd_unit=UNIT, timeout=30)
    assert failed
    assert "crashed (ActiveState=failed)" in result["msg"]
    assert "Result=start-limit-hit" in result["msg"]
    assert 0.25 <= result["waited_s"] < 2


@pytest.mark.parametrize(
    "state, text",
    [
        ({"active": "inactive", "sub": "dead"}, "stopped (ActiveState=inactive, SubState=dead)"),
        ({"active": "inactive", "sub": "dead", "load": "not-found"}, "was not found (LoadState=not-found)"),
        ({"active": "activating", "sub": "auto-restart", "result": "exit-code"}, "waits to be restarted"),
    ],
)
def test_unit_down_states(systemctl, state, text):
    systemctl.set(**state)
    result, failed = run(f"http://127.0.0.1:{free_port()}", systemd_unit=UNIT, timeout=30)
    assert failed
    assert text in result["msg"]
    assert result["attempts"] == 1


def test_unit_active_and_server_healthy(systemctl):
    systemctl.set(active="active", sub="running")
    with FakeVLLM(models=("qwen",)) as srv:
        result, failed = run(srv.url, served_model_name="qwen", systemd_unit=UNIT, timeout=10)
    assert not failed, result
    assert result["ready"] is True and result["model"] == "qwen"
    assert result["unit_state"]["ActiveState"] == "active"
    # Read once at the start; never while the server answers.
    assert len(systemctl.calls) == 1


def test_unit_failed_but_server_answers(systemctl):
    """The unit is only looked at when a probe fails."""
    systemctl.set(active="failed", sub="failed")
    with FakeVLLM() as srv:
        result, failed = run(srv.url, probe="health", systemd_unit=UNIT, timeout=10)
    assert not failed, result
    assert len(systemctl.calls) == 1


def test_unit_activating_while_server_starts(systemctl):
    with FakeVLLM(start_delay=0.3, warmup=0.2) as srv:
        result, failed = run(srv.url, systemd_unit=UNIT, timeout=10, interval=0.1)
    assert not failed, result
    assert 0.45 <= result["waited_s"] < 1.5
    assert 2 <= len(systemctl.calls) <= result["attempts"]


def test_unit_is_read_at_most_once_per_interval(systemctl):
    began = time.monotonic()
    result, failed = run(f"http://127.0.0.1:{free_port()}", systemd_unit=UNIT, timeout=1, interval=0.25)
    assert failed
    elapsed = time.monotonic() - began
    assert result["msg"].startswith("waited 1s for")
    assert f"systemd unit {UNIT}: ActiveState=activating, SubState=start" in result["msg"]
    calls = len(systemctl.calls)
    assert calls <= result["attempts"]
    assert calls <= elapsed / 0.25 + 1


def test_unit_state_unreadable_fails(systemctl):
    systemctl.fail_with(1)
    result, failed = run(f"http://127.0.0.1:{free_port()}", systemd_unit=UNIT, timeout=30)
    assert failed
    assert f"cannot read the state of systemd unit {UNIT}" in result["msg"]
    assert "Host is down" in result["msg"]
    assert len(systemctl.calls) == 1


def test_unit_read_errors_later_are_ignored(systemctl):
    with FakeVLLM(start_delay=0.3) as srv:
        timer = threading.Timer(0.1, systemctl.fail_with, args=(1,))
        systemctl.timers.append(timer)
        timer.start()
        result, failed = run(srv.url, probe="health", systemd_unit=UNIT, timeout=10)
    assert not failed, result
    assert result["unit_state"]["ActiveState"] == "activating"


def test_unit_without_restart_counter(systemctl):
    """Old systemd (< 235) has no NRestarts; the other states still count."""
    (systemctl.bindir / "state").write_text("ActiveState=activating\nSubState=start\n")
    systemctl.set_later(0.3, active="failed", sub="failed")
    result, failed = run(f"http://127.0.0.1:{free_port()}", systemd_unit=UNIT, timeout=30)
    assert failed
    assert "crashed (ActiveState=failed)" in result["msg"]


def test_empty_unit_is_not_set(systemctl):
    with FakeVLLM() as srv:
        result, failed = run(srv.url, probe="health", systemd_unit="", timeout=5)
    assert not failed, result
    assert "unit_state" not in result
    assert systemctl.calls == []


def test_unit_check_mode(systemctl):
    systemctl.set(active="failed", sub="failed")
    result, failed = run(f"http://127.0.0.1:{free_port()}", check_mode=True, systemd_unit=UNIT, timeout=30)
    assert failed
    assert "crashed (ActiveState=failed)" in result["msg"]
    assert len(systemctl.calls) == 1


def test_parse_unit_state():
    text = "NRestarts=\nActiveState=active\nbogus line\nSubState=running\nExecMainStatus=x\nOther=1\n"
    assert vllm_health.parse_unit_state(text) == {
        "LoadState": None,
        "ActiveState": "active",
        "SubState": "running",
        "Result": None,
        "ExecMainStatus": None,
        "NRestarts": None,
    }


@pytest.mark.parametrize(
    "args, text",
    [
        ({"url": "127.0.0.1:8000"}, "invalid url"),
        ({"url": "http://127.0.0.1:1", "interval": 0}, "interval"),
        ({"url": "http://127.0.0.1:1", "timeout": -1}, "timeout"),
        ({"url": "http://127.0.0.1:1", "request_timeout": 0}, "request_timeout"),
        ({"url": "http://127.0.0.1:1", "probe": "bogus"}, "probe"),
    ],
)
def test_bad_arguments(args, text):
    result, failed = run_module(vllm_health.main, args)
    assert failed
    assert text in result["msg"]


def test_embedding_probe_asks_for_a_vector():
    with FakeVLLM(models=("minilm",)) as srv:
        result, failed = run(srv.url, served_model_name="minilm", probe="embedding", timeout=10)
    assert not failed, result
    assert result["ready"] is True and result["model"] == "minilm"
    assert paths(srv) == ["/v1/models", "/v1/embeddings"]
    assert srv.requests[-1]["body"] == {"model": "minilm", "input": "ping"}


def test_embedding_probe_keeps_waiting_on_errors():
    with FakeVLLM(models=("minilm",), embedding_status=500) as srv:
        result, failed = run(srv.url, probe="embedding", timeout=1)
    assert failed
    assert "/v1/embeddings to embed a word with model 'minilm'" in result["msg"]
    assert paths(srv).count("/v1/embeddings") > 2
