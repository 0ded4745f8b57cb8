"""The gateway role refuses bad input in preflight, before any change, with a message naming the problem.

The role runs *as* the gateway: the second ``-i`` inventory makes ``localhost`` the ``gateway`` host (and a serving
host with one loopback instance), beside two fictional serving hosts s1 and s2 that are only read through
``hostvars``. ``--limit localhost --tags gateway_preflight`` in check mode runs the preflight and nothing else; the
fictional hosts are never contacted and nothing on this machine changes.
"""

from __future__ import annotations

import datetime
import os

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .rolerun import ROOT, os_facts, run_role

KEY_CI = "ci0123456789abcdefghijklmnopqrstuvwxyzABCD"
KEY_LAPTOP = "laptop0123456789abcdefghijklmnopqrstuvwxyzAB"
BACKEND_KEY = "backend-vllm-key-never-printed-0123456789"
LOCAL_KEY = "local-vllm-key-never-printed-0123456789ab"
SHORT_KEY = "short-secret-Zq7"


def _preflight_task_names():
    """Names of every task in tasks/preflight.yml, blocks included."""
    names = set()

    def walk(tasks):
        for task in tasks or []:
            names.add(task.get("name"))
            for section in ("block", "rescue", "always"):
                walk(task.get(section))

    with open(os.path.join(ROOT, "roles", "gateway", "tasks", "preflight.yml"), encoding="utf-8") as handle:
        walk(yaml.safe_load(handle))
    names.discard(None)
    return names


PREFLIGHT_TASKS = _preflight_task_names()
HARNESS_TASKS = {"Pretend to be the OS under test", "Run the role"}


def outside_preflight(names):
    """Task names that are neither the harness's, the argument validation nor preflight's."""
    return [
        name
        for name in names
        if name not in PREFLIGHT_TASKS | HARNESS_TASKS and not name.startswith("Validating arguments against arg spec")
    ]


def inventory(tmp_path, gateway=None, servers=None):
    """localhost is the gateway (and serves ``local`` on loopback); s1 and s2 hold replicas of qwen."""
    gw = {
        "ansible_connection": "local",
        "gateway_api_keys": [{"name": "ci", "key": KEY_CI}, {"name": "laptop", "key": KEY_LAPTOP, "rate": "5r/s"}],
        "vllm_instances": [
            {"name": "local", "served_model_name": "small", "port": 8000, "host": "127.0.0.1", "api_key": LOCAL_KEY}
        ],
    }
    gw.update(gateway or {})
    qwen = {"name": "chat", "served_model_name": "qwen", "port": 8000, "host": "0.0.0.0", "api_key": BACKEND_KEY}
    emb = {"name": "emb", "port": 8001, "host": "10.0.0.2", "task": "embed"}
    hosts = {
        "s1": {"ansible_host": "10.0.0.2", "vllm_instances": [qwen, emb]},
        "s2": {"ansible_host": "10.0.0.3", "vllm_instances": [dict(qwen)]},
    }
    for host, instances in (servers or {}).items():
        hosts[host]["vllm_instances"] = instances
    data = {
        "gateway": {"hosts": {"localhost": gw}},
        "llm_servers": {"hosts": {"localhost": None, **hosts}},
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def preflight(tmp_path, *, gateway=None, servers=None, verbose=False):
    extra = ["-i", str(inventory(tmp_path, gateway, servers)), "--limit", "localhost"]
    if verbose:
        extra.append("-vvv")
    # all_ipv4_addresses is given so that preflight does not gather this machine's facts over the fake OS.
    facts = os_facts("debian12", all_ipv4_addresses=["10.0.0.1"], hostname="gw")
    return run_role(tmp_path, "gateway", facts=facts, tags=["gateway_preflight"], extra_args=extra)


def role_tasks(run):
    return [name.split(" : ", 1)[-1] for name, _result in run.tasks()]


def assert_refused(run, task, *needles):
    """The run failed in ``task`` of preflight, ran nothing after it and changed nothing; returns the message."""
    assert run.rc != 0, f"preflight passed; ran {role_tasks(run)}"
    message = run.failure()
    assert message, run.output
    # A looped task fails with "One or more items failed"; the messages are the failed items'.
    items = run.tasks()[-1][1].get("results") or []
    message = " ".join([message] + [item.get("msg", "") for item in items if item.get("failed")])
    names = role_tasks(run)
    assert names[-1] == task, f"failed in {names[-1]!r}, not {task!r}: {message}"
    assert outside_preflight(names) == []
    assert not [name for name, result in run.tasks() if result.get("changed")]
    for needle in needles:
        assert needle in message, message
    return message


def keys(*entries):
    return {"gateway_api_keys": list(entries)}


@pytest.mark.parametrize(
    ("gateway", "needles"),
    [
        pytest.param(keys(), ["no key given"], id="no-key"),
        pytest.param(
            keys({"name": "ci", "key": KEY_CI}, {"name": "ci", "key": KEY_LAPTOP}),
            ["duplicate key name", "'ci'", "own name"],
            id="duplicate-name",
        ),
        pytest.param(
            keys({"name": "ci", "key": KEY_CI}, {"name": "tablet", "key": SHORT_KEY}),
            ["'tablet'", "32 to 256 characters"],
            id="short-key",
        ),
    ],
)
def test_bad_keys_are_refused(tmp_path, gateway, needles):
    run = preflight(tmp_path, gateway=gateway)
    assert_refused(run, "Check the API keys", "gateway_api_keys", *needles)
    for secret in (SHORT_KEY, KEY_CI, KEY_LAPTOP, BACKEND_KEY, LOCAL_KEY):
        assert secret not in run.output


@pytest.mark.parametrize(
    ("entry", "needles"),
    [
        pytest.param({"rate": "ten per second"}, ["(tablet)", "10r/s", "got 'ten per second'"], id="rate"),
        pytest.param(
            {"max_body_size": "16m"}, ["(tablet)", "gateway_client_max_body_size 8m", "got '16m'"], id="body-size"
        ),
    ],
)
def test_bad_key_limits_are_refused(tmp_path, entry, needles):
    gateway = keys({"name": "ci", "key": KEY_CI}, {"name": "tablet", "key": KEY_LAPTOP, **entry})
    run = preflight(tmp_path, gateway=gateway)
    assert_refused(run, "Check the API key limits", *needles)
    for secret in (KEY_CI, KEY_LAPTOP, BACKEND_KEY, LOCAL_KEY):
        assert secret not in run.output


def test_no_serving_hosts_is_refused(tmp_path):
    run = preflight(tmp_path, gateway={"gateway_backend_hosts": []})
    assert_refused(run, "Check the routes", "no serving hosts", "gateway_backend_hosts is empty")


def test_port_of_a_local_instance_is_refused(tmp_path):
    run = preflight(tmp_path, gateway={"gateway_port": 8000})
    assert_refused(run, "Check the port", "gateway_port 8000", "vLLM instance on localhost", "[8000]")


def test_remote_loopback_instance_is_refused(tmp_path):
    loopback = {"name": "chat", "served_model_name": "qwen", "port": 8000, "host": "127.0.0.1"}
    run = preflight(tmp_path, servers={"s2": [loopback]})
    assert_refused(run, "Check the routes", "s2: vllm instance chat binds 127.0.0.1", "cannot reach", "private address")


def test_replicas_with_different_backend_keys_are_refused(tmp_path):
    other = {"name": "chat", "served_model_name": "qwen", "port": 8000, "host": "0.0.0.0", "api_key": "x" * 40}
    run = preflight(tmp_path, servers={"s2": [other]})
    message = assert_refused(run, "Check the routes", "replicas of qwen have different api_key values")
    assert BACKEND_KEY not in run.output and "x" * 40 not in run.output
    assert "same api_key" in message


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(name="tls_pair", scope="module")
def fixture_tls_pair():
    """A self-signed certificate, its key, and another key."""
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key), _pem_key(other)


def _provided(cert, key):
    return {"gateway_tls_mode": "provided", "gateway_tls_certificate": cert, "gateway_tls_private_key": key}


def test_certificate_of_another_key_is_refused(tmp_path, tls_pair):
    cert, _key, other = tls_pair
    run = preflight(tmp_path, gateway=_provided(cert, other))
    assert_refused(run, "Compare the public keys", "does not match gateway_tls_private_key", "gw.test")
    for line in other.splitlines()[1:-1]:
        assert line not in run.output


def test_matching_certificate_passes(tmp_path, tls_pair):
    cert, key, _other = tls_pair
    run = preflight(tmp_path, gateway=_provided(cert, key))
    assert run.rc == 0, run.failure() or run.output
    compared = run.result("Compare the public keys")
    assert not compared.get("skipped") and not compared.get("failed")
    assert not run.result("Read the provided certificate").get("skipped")
    for line in key.splitlines()[1:-1]:
        assert line not in run.output


def test_valid_configuration_passes_without_showing_keys(tmp_path):
    run = preflight(tmp_path, verbose=True)
    assert run.rc == 0, run.failure() or run.output
    names = role_tasks(run)
    assert outside_preflight(names) == []
    for task in ("Check the routes", "Check the API keys", "Check the API key limits", "Check the port"):
        assert task in names
    assert not [name for name, result in run.tasks() if result.get("changed")]
    assert run.result("Plan the routes").get("censored")
    sans = run.result("Resolve the certificate names")["ansible_facts"]["__gateway_sans"]
    assert {"DNS:localhost", "DNS:gw", "IP:127.0.0.1", "IP:10.0.0.1"} <= set(sans)
    assert "<localhost> ESTABLISH LOCAL CONNECTION" in run.output  # -vvv took effect
    for secret in (KEY_CI, KEY_LAPTOP, BACKEND_KEY, LOCAL_KEY):
        assert secret not in run.output
