"""The clients role, run for real on localhost against an inventory of one gateway and two serving hosts.

The inventory is a second ``-i`` file beside the harness's ``localhost,``; ``--limit localhost`` keeps the play on
this machine while the role reads the gateway's and the serving hosts' variables through ``hostvars``. Every file is
written under the test's temporary directory. Nothing contacts the (fictional) gateway.
"""

from __future__ import annotations

import stat

import pytest
import yaml

from .rolerun import run_role

KEY_CI = "ci0123456789abcdefghijklmnopqrstuvwxyzABCD"
KEY_LAPTOP = "laptop0123456789abcdefghijklmnopqrstuvwxyzAB"
BACKEND_KEY = "backend-vllm-key-never-printed-0123456789"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfakeCAforTests\n-----END CERTIFICATE-----\n"


def inventory(tmp_path, **gateway):
    """gw in front of s1 and s2: qwen has a replica on each, emb runs on s1, coder on s2."""
    ca = tmp_path / "controller" / "gw-ca.pem"
    ca.parent.mkdir(parents=True, exist_ok=True)
    ca.write_text(CA_PEM)
    gw = {
        "ansible_host": "10.0.0.1",
        "gateway_port": 9443,
        "gateway_ca_local_path": str(ca),
        "gateway_api_keys": [{"name": "ci", "key": KEY_CI}, {"name": "laptop", "key": KEY_LAPTOP, "rate": "5r/s"}],
    }
    gw.update(gateway)
    qwen = {"name": "chat", "served_model_name": "qwen", "port": 8000, "host": "0.0.0.0", "api_key": BACKEND_KEY}
    emb = {"name": "emb", "port": 8001, "host": "0.0.0.0", "task": "embed"}
    coder = {"name": "ac", "served_model_name": "coder", "port": 8002, "host": "0.0.0.0", "roles": ["autocomplete"]}
    data = {
        "gateway": {"hosts": {"gw": gw}},
        "llm_servers": {
            "hosts": {
                "s1": {"ansible_host": "10.0.0.2", "vllm_instances": [qwen, emb]},
                "s2": {"ansible_host": "10.0.0.3", "vllm_instances": [qwen, coder]},
            }
        },
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(tmp_path, *, check=False, gateway=None, verbose=False, **variables):
    paths = {
        "clients_continue_config_path": str(tmp_path / "home" / ".continue" / "assistants" / "gpubox.yaml"),
        "clients_env_path": str(tmp_path / "home" / ".config" / "gpubox" / "gateway.env"),
        "clients_ca_path": str(tmp_path / "home" / ".config" / "gpubox" / "gw-ca.pem"),
    }
    paths.update(variables)
    extra = ["-i", str(inventory(tmp_path, **(gateway or {}))), "--limit", "localhost"]
    if verbose:
        extra.append("-vvv")
    return run_role(tmp_path, "clients", variables=paths, check=check, extra_args=extra)


def changed(run):
    return [name.split(" : ", 1)[-1] for name, result in run.tasks() if result.get("changed")]


@pytest.fixture(name="written", scope="module")
def fixture_written(tmp_path_factory):
    """One real run with a role override and the second key, then a second run for idempotence."""
    tmp_path = tmp_path_factory.mktemp("clients")
    settings = {"clients_api_key_name": "laptop", "clients_model_roles": {"qwen": ["chat", "edit"]}}
    first = _run(tmp_path, **settings)
    assert first.rc == 0, first.failure() or first.output
    second = _run(tmp_path, **settings)
    return tmp_path / "home", first, second


def test_continue_assistant_has_one_entry_per_model(written):
    home, _first, _second = written
    doc = yaml.safe_load((home / ".continue" / "assistants" / "gpubox.yaml").read_text())
    assert (doc["name"], doc["schema"]) == ("gpubox", "v1")
    assert str(doc["version"])
    # qwen has two replicas, yet one entry; sorted by model.
    assert [m["model"] for m in doc["models"]] == ["coder", "emb", "qwen"]
    roles = {m["model"]: m["roles"] for m in doc["models"]}
    # coder declares [autocomplete]; emb is an embed instance (default [embed]); qwen's are overridden.
    assert roles == {"coder": ["autocomplete"], "emb": ["embed"], "qwen": ["chat", "edit"]}
    ca = str(home / ".config" / "gpubox" / "gw-ca.pem")
    for model in doc["models"]:
        assert model["name"] == model["model"]
        assert model["provider"] == "openai"
        assert model["apiBase"] == "https://10.0.0.1:9443/v1"
        assert model["apiKey"] == KEY_LAPTOP
        assert model["requestOptions"] == {"caBundlePath": ca}
    assert (home / ".config" / "gpubox" / "gw-ca.pem").read_text() == CA_PEM


def test_env_file_and_modes(written):
    home, _first, _second = written
    env = home / ".config" / "gpubox" / "gateway.env"
    lines = [line for line in env.read_text().splitlines() if line and not line.startswith("#")]
    assert lines == [
        "OPENAI_BASE_URL='https://10.0.0.1:9443/v1'",
        f"OPENAI_API_KEY='{KEY_LAPTOP}'",
        f"SSL_CERT_FILE='{home / '.config' / 'gpubox' / 'gw-ca.pem'}'",
    ]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".continue" / "assistants" / "gpubox.yaml").stat().st_mode) == 0o600
    # Parent directories the role made are private.
    for folder in (home / ".config" / "gpubox", home / ".continue", home / ".continue" / "assistants"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_second_run_changes_nothing(written):
    _home, first, second = written
    assert second.rc == 0, second.failure()
    assert changed(second) == []
    assert "Check the files" in [name.split(" : ", 1)[-1] for name, _result in first.tasks()]


def test_unserved_model_is_refused_before_any_change(tmp_path):
    run = _run(tmp_path, check=True, clients_model_roles={"llama-70b": ["chat"]})
    assert run.rc != 0
    message = run.failure()
    assert "llama-70b" in message and "served: coder, emb, qwen" in message
    assert changed(run) == []
    assert not (tmp_path / "home").exists()


def test_unknown_role_is_refused(tmp_path):
    run = _run(tmp_path, check=True, clients_model_roles={"qwen": ["chat", "fim"]})
    assert run.rc != 0
    assert "qwen" in run.failure() and "non-empty list of chat" in run.failure()


def test_unknown_key_name_is_refused(tmp_path):
    run = _run(tmp_path, check=True, clients_api_key_name="desktop")
    assert run.rc != 0
    message = run.failure()
    assert "desktop" in message and "ci, laptop" in message
    assert KEY_CI not in run.output and KEY_LAPTOP not in run.output
    assert changed(run) == []


def test_missing_private_ca_is_refused(tmp_path):
    run = _run(tmp_path, check=True, gateway={"gateway_ca_local_path": str(tmp_path / "nowhere.pem")})
    assert run.rc != 0
    assert "nowhere.pem" in run.failure()


def test_public_certificate_needs_no_ca(tmp_path):
    run = _run(
        tmp_path,
        gateway={
            "gateway_tls_mode": "provided",
            "gateway_server_name": "llm.example.com",
            "gateway_ca_local_path": str(tmp_path / "nowhere.pem"),
        },
    )
    assert run.rc == 0, run.failure()
    home = tmp_path / "home"
    doc = yaml.safe_load((home / ".continue" / "assistants" / "gpubox.yaml").read_text())
    assert {m["apiBase"] for m in doc["models"]} == {"https://llm.example.com:9443/v1"}
    assert all("requestOptions" not in m for m in doc["models"])
    assert "SSL_CERT_FILE" not in (home / ".config" / "gpubox" / "gateway.env").read_text()
    assert not (home / ".config" / "gpubox" / "gw-ca.pem").exists()


def test_tilde_is_the_client_users_home(tmp_path):
    run = _run(tmp_path, check=True, clients_env_path="~/.config/gpubox/gateway.env")
    assert run.rc == 0, run.failure()
    facts = run.result("Resolve the files on the client host")["ansible_facts"]
    assert facts["__clients_env_file"].endswith("/.config/gpubox/gateway.env")
    assert not facts["__clients_env_file"].startswith("~")


def test_no_key_in_verbose_output(tmp_path):
    run = _run(tmp_path, verbose=True)
    assert run.rc == 0, run.failure()
    assert KEY_CI in (tmp_path / "home" / ".config" / "gpubox" / "gateway.env").read_text()
    for secret in (KEY_CI, KEY_LAPTOP, BACKEND_KEY):
        assert secret not in run.output
