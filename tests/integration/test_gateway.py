"""The gateway scenario from a client's side: the official openai SDK, the CA the role fetched, real vLLM replicas.

Run by molecule/gateway/verify.yml on the controller. Environment:
  GPUBOX_GATEWAY_STATE   the scenario's state folder (generated keys, fetched CA, client files)
  GPUBOX_GATEWAY_MODELS  comma-separated served model names the inventory declares
  MOLECULE_INVENTORY_FILE, MOLECULE_SCENARIO_DIRECTORY   to re-run the converge (key rotation, -vvv)
"""

from __future__ import annotations

import json
import os
import pathlib
import ssl
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import openai
import pytest
import yaml

STATE = pathlib.Path(os.environ.get("GPUBOX_GATEWAY_STATE", "/nonexistent"))
GATEWAY = "gpubox-gw"
REPLICA = "gpubox-gw-a"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]

pytestmark = pytest.mark.skipif(not STATE.is_dir(), reason="runs inside the Molecule gateway scenario")


def _docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def _address(container):
    return _docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)


def _key(name):
    return (STATE / f"key-{name}").read_text().split()[0]


@pytest.fixture(scope="session")
def base_url():
    return f"https://{_address(GATEWAY)}:8443/v1"


@pytest.fixture(scope="session")
def tls():
    return ssl.create_default_context(cafile=str(STATE / "ca.pem"))


def _client(base_url, tls, key, retries=0):
    return openai.OpenAI(
        base_url=base_url,
        api_key=key,
        max_retries=retries,
        timeout=300,
        http_client=openai.DefaultHttpxClient(verify=tls),
    )


@pytest.fixture(scope="session")
def client(base_url, tls):
    return _client(base_url, tls, _key("ci"))


@pytest.fixture(scope="session")
def raw(base_url, tls):
    with httpx.Client(base_url=base_url.removesuffix("/v1"), verify=tls, timeout=60) as http:
        yield http


def test_chat_completion(client):
    reply = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=16, temperature=0)
    assert "Paris" in reply.choices[0].message.content
    assert reply.model == "smollm2"


def test_chat_completion_streams(client):
    chunks = list(
        client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=16, temperature=0, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3, "the stream came in one piece"
    assert "Paris" in text


def test_models_lists_every_served_model(client):
    expected = set(os.environ["GPUBOX_GATEWAY_MODELS"].split(","))
    assert {m.id for m in client.models.list()} == expected


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdefghijklmnopqrstuvwxyz"])
def test_missing_or_wrong_key_gets_401(raw, base_url, tls, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
        response = raw.request(method, path, headers=headers, json={"model": "smollm2", "messages": QUESTION})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "invalid_api_key"
    if key:  # the SDK itself refuses to send no key
        with pytest.raises(openai.AuthenticationError):
            _client(base_url, tls, key).models.list()


@pytest.mark.parametrize(
    "path",
    [
        "/tokenize",
        "/detokenize",
        "/collective_rpc",
        "/sleep",
        "/wake_up",
        "/invocations",
        "/metrics",
        "/version",
        "/docs",
        "/openapi.json",
        "/pooling",
        "/v1/load_lora_adapter",
        "/v1/responses",
        "/v1/models/smollm2",
        "/v1/chat/completions/x",
        "/",
    ],
)
def test_other_paths_get_404(raw, path):
    auth = {"Authorization": f"Bearer {_key('ci')}"}
    for method in ("GET", "POST"):
        assert raw.request(method, path, headers=auth, json={}).status_code == 404, (method, path)


def test_health_is_open_for_monitoring(raw):
    response = raw.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_unknown_model_gets_a_clear_error(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=1)
    assert "no-such-model" in str(error.value)
    assert "does not exist" in str(error.value)
    assert error.value.body["code"] == "model_not_found"


def test_per_key_body_limit(base_url, tls, client):
    long_prompt = "word " * 2000  # 10 kB, over the limited key's 4k
    with pytest.raises(openai.APIStatusError) as error:
        _client(base_url, tls, _key("limited")).completions.create(model="smollm2", prompt=long_prompt, max_tokens=1)
    assert error.value.status_code == 413
    # The same body is fine for a key without that limit (the model then refuses it as too long, or answers).
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smollm2", prompt=long_prompt * 3, max_tokens=1)


def test_per_key_rate_limit(raw):
    auth = {"Authorization": f"Bearer {_key('limited')}"}
    statuses = [raw.post("/v1/completions", headers=auth, json={}).status_code for _attempt in range(12)]
    assert 429 in statuses, statuses
    assert 400 in statuses, statuses  # the requests within the burst reached the router (no model given)
    unlimited = {"Authorization": f"Bearer {_key('ci')}"}
    assert {raw.post("/v1/completions", headers=unlimited, json={}).status_code for _attempt in range(12)} == {400}


def test_generated_continue_config_answers(tls):
    config = yaml.safe_load((STATE / "continue" / "assistants" / "gpubox.yaml").read_text())
    models = config["models"]
    assert sorted(m["model"] for m in models) == sorted(os.environ["GPUBOX_GATEWAY_MODELS"].split(","))
    for model in models:
        assert model["provider"] == "openai"
        ca = ssl.create_default_context(cafile=model["requestOptions"]["caBundlePath"])
        sdk = openai.OpenAI(
            base_url=model["apiBase"],
            api_key=model["apiKey"],
            max_retries=0,
            timeout=120,
            http_client=openai.DefaultHttpxClient(verify=ca),
        )
        if "embed" in model["roles"]:
            assert sdk.embeddings.create(model=model["model"], input="hello").data[0].embedding
        elif "autocomplete" in model["roles"]:
            assert sdk.completions.create(model=model["model"], prompt="def add(a, b):", max_tokens=4).choices
        else:
            reply = sdk.chat.completions.create(model=model["model"], messages=QUESTION, max_tokens=16, temperature=0)
            assert "Paris" in reply.choices[0].message.content


def test_client_env_file(base_url):
    env_file = STATE / "gateway.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    values = {name: value.strip("'\"") for name, value in values.items()}
    assert values["OPENAI_BASE_URL"] == base_url
    assert values["OPENAI_API_KEY"] == _key("ci")
    assert values["SSL_CERT_FILE"] == str(STATE / "gateway-ca.pem")


def test_secret_files_are_0600():
    files = [
        "/etc/nginx/gpubox/api-keys.map",
        "/etc/nginx/conf.d/gpubox-gateway.conf",
        "/etc/nginx/gpubox/tls/ca.key",
        "/etc/nginx/gpubox/tls/server.key",
    ]
    modes = _docker("exec", GATEWAY, "stat", "-c", "%n %a %U", *files).splitlines()
    assert modes == [f"{f} 600 root" for f in files]


@pytest.mark.parametrize(
    ("replica", "other", "port"), [(REPLICA, "gpubox-gw-b", 18101), ("gpubox-gw-b", REPLICA, 18102)]
)
def test_backends_admit_only_the_gateway(replica, other, port):
    """ufw on gpubox-gw-a, firewalld on gpubox-gw-b: instance ports are open to the gateway and closed to anyone
    else (the controller, the other serving host)."""
    health = f"http://{_address(replica)}:{port}/health"
    with pytest.raises(httpx.TransportError):
        httpx.get(health, timeout=3)  # the controller
    reached = subprocess.run(["docker", "exec", other, "curl", "-sf", "-m", "3", health], check=False)
    assert reached.returncode != 0, "another serving host reached the instance"
    assert subprocess.run(["docker", "exec", GATEWAY, "curl", "-sf", "-m", "10", health], check=False).returncode == 0
    if replica == REPLICA:
        status = _docker("exec", replica, "ufw", "status")
        assert "Status: active" in status and f"{port}/tcp" in status and _address(GATEWAY) in status, status
    else:
        assert _docker("exec", replica, "firewall-cmd", "--state") == "running"
        rules = _docker("exec", replica, "firewall-cmd", "--list-rich-rules")
        assert f'source address="{_address(GATEWAY)}" port port="{port}"' in rules, rules
    status = _docker("exec", GATEWAY, "ufw", "status")
    assert "Status: active" in status and "8443/tcp" in status, status


def _firewall_play(extra_rules, tmp_path):
    """The serving hosts' firewall as site.yml sets it, plus ``extra_rules``."""
    playbook = tmp_path / "firewall.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {"name": "Facts", "hosts": "all", "gather_facts": True, "gather_subset": ["min", "network"]},
                {
                    "name": "Serving hosts' firewall, with extra rules",
                    "hosts": "llm_servers",
                    "become": True,
                    "gather_facts": False,
                    "vars": {
                        "__rules": "{{ (hostvars | gpubox.llm.gateway_firewall(groups['gateway'], inventory_hostname,"
                        " groups['llm_servers'])).rules }}"
                    },
                    "roles": [{"role": "gpubox.llm.firewall", "vars": {"firewall_allow": "{{ __rules + extra }}"}}],
                },
            ]
        )
    )
    run = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "-e",
            json.dumps({"extra": extra_rules}),
            str(playbook),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


def _firewall_rules():
    return {
        REPLICA: _docker("exec", REPLICA, "ufw", "status"),
        "gpubox-gw-b": _docker("exec", "gpubox-gw-b", "firewall-cmd", "--list-all"),
    }


def test_firewall_closes_the_ports_it_no_longer_lists(tmp_path):
    """A port the role opened (to a source, and to any) is closed by the next run that no longer lists it, on ufw
    and on firewalld; the instance ports stay open to the gateway."""
    extra = [{"port": 18999, "sources": [_address(GATEWAY)]}, {"port": 18998}]
    _firewall_play(extra, tmp_path)
    for host, rules in _firewall_rules().items():
        assert "18999" in rules and "18998" in rules, (host, rules)

    _firewall_play([], tmp_path)
    for host, rules in _firewall_rules().items():
        assert "18999" not in rules and "18998" not in rules, (host, rules)
        assert "18101" in rules, (host, rules)
    for replica in (REPLICA, "gpubox-gw-b"):
        health = f"http://{_address(replica)}:18101/health"
        reached = subprocess.run(["docker", "exec", GATEWAY, "curl", "-sf", "-m", "10", health], check=False)
        assert reached.returncode == 0, f"the gateway lost {health}"


def test_key_rotation_reloads_without_dropping_a_stream_and_logs_no_secret(base_url, tls, client, tmp_path):
    """A new key is added by a -vvv converge while a long stream is read slowly: the stream completes, nginx
    reloaded (same master) and the log of the run holds none of the secrets."""
    rotated = {
        "gateway_api_keys": [
            {"name": "ci", "key": _key("ci")},
            {"name": "limited", "key": _key("limited"), "rate": "2r/s", "burst": 2, "max_body_size": "4k"},
            {"name": "rotated", "key": "R0tated" + os.urandom(24).hex()},
        ]
    }
    extra = tmp_path / "rotated.json"
    extra.write_text(json.dumps(rotated))
    master = _docker("exec", GATEWAY, "cat", "/run/nginx.pid")

    result = {}

    def read_slowly():
        try:
            stream = client.completions.create(
                model="smollm2",
                prompt="Once upon a time",
                # About 380 s of reading (0.2 s a chunk): longer than a -vvv converge on a loaded 2-core machine.
                max_tokens=1900,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            count = 0
            for chunk in stream:
                count += 1
                result.setdefault("first", time.monotonic())
                time.sleep(0.2)
                result["finish"] = chunk.choices[0].finish_reason if chunk.choices else result.get("finish")
            result["chunks"] = count
        except Exception as exc:  # reported by the assertion below
            result["error"] = repr(exc)
        result["end"] = time.monotonic()

    reader = threading.Thread(target=read_slowly)
    reader.start()
    while "first" not in result and reader.is_alive():
        time.sleep(0.2)
    run = subprocess.run(
        [
            "ansible-playbook",
            "-vvv",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "-e",
            f"@{extra}",
            str(pathlib.Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    played = time.monotonic()
    log = run.stdout + run.stderr
    (STATE / "converge-vvv.log").write_text(log)
    assert run.returncode == 0, log[-4000:]
    assert reader.is_alive(), "the stream ended before the reload; nothing was tested"
    reader.join(timeout=600)
    assert "error" not in result, result
    assert result["finish"] == "length", result
    assert result["end"] > played

    assert _docker("exec", GATEWAY, "cat", "/run/nginx.pid") == master, "nginx restarted instead of reloading"
    assert _client(base_url, tls, rotated["gateway_api_keys"][2]["key"]).models.list().data

    secrets = [k["key"] for k in rotated["gateway_api_keys"]]
    secrets += [line for line in (STATE / "gateway.env").read_text().splitlines() if line.startswith("OPENAI_API_KEY")]
    for secret in secrets:
        assert secret not in log, "a secret appears in the -vvv output"
    assert "TASK [gpubox.llm.gateway" in log or "TASK [gateway" in log


def _drain(state, tmp_path):
    """Run the gateway role's drain entry point for REPLICA, as playbooks/upgrade.yml does."""
    playbook = tmp_path / f"drain-{state}.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"Mark {REPLICA} {state}",
                    "hosts": REPLICA,
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Drain",
                            "ansible.builtin.include_role": {"name": "gpubox.llm.gateway", "tasks_from": "drain"},
                            "vars": {
                                "gateway_drain_host": REPLICA,
                                "gateway_drain_gateways": "{{ groups['gateway'] }}",
                                "gateway_drain_state": state,
                            },
                        }
                    ],
                }
            ]
        )
    )
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout


def _upstreams_since(before):
    log = _docker("exec", GATEWAY, "tail", "-n", f"+{int(before) + 1}", "/var/log/nginx/gpubox-gateway.access.log")
    return [line.split('"')[3] for line in log.splitlines() if "/v1/chat/completions" in line]


def _log_length():
    return _docker("exec", GATEWAY, "wc", "-l", "/var/log/nginx/gpubox-gateway.access.log").split()[0]


def test_a_drained_replica_gets_no_new_requests(client, tmp_path):
    """The drain that upgrade.yml runs before restarting a host: nginx reloads (same master) with that host's
    replicas down, every request goes to the other replica, and putting it back restores the file byte for byte."""
    conf = "/etc/nginx/conf.d/gpubox-gateway.conf"
    original = _docker("exec", GATEWAY, "sha256sum", conf)
    master = _docker("exec", GATEWAY, "cat", "/run/nginx.pid")
    drained_address = f"{_address(REPLICA)}:18101"

    _drain("drained", tmp_path)
    lines = _docker("exec", GATEWAY, "grep", "-E", " vllm@", conf).splitlines()
    down = [line for line in lines if " down;" in line]
    assert len(down) == 1 and drained_address in down[0], lines
    assert "changed=0" in _drain("drained", tmp_path), "draining twice changed something"
    before = _log_length()
    for i in range(8):
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": f"Count to {i + 3}."}], max_tokens=4
        )
    upstreams = _upstreams_since(before)
    assert len(upstreams) == 8 and not any(drained_address in u for u in upstreams), upstreams

    _drain("serving", tmp_path)
    assert _docker("exec", GATEWAY, "sha256sum", conf) == original
    assert _docker("exec", GATEWAY, "cat", "/run/nginx.pid") == master, "nginx restarted instead of reloading"


def test_a_replica_killed_during_100_requests_fails_none(client):
    """SIGKILL one of smollm2's two replicas mid-run: the gateway retries on the other one."""
    before = _log_length()

    def ask(i):
        reply = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": f"Count to {i % 7 + 3}."}], max_tokens=8
        )
        return reply.choices[0].message.content

    failures, answers = [], []
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(ask, i) for i in range(100)]
        for n, future in enumerate(futures):
            if n == 20:
                _docker("exec", REPLICA, "systemctl", "kill", "--signal=SIGKILL", "vllm@chat.service")
            try:
                answers.append(future.result())
            except openai.OpenAIError as exc:
                failures.append(repr(exc))
    assert failures == [], f"{len(failures)} of 100 failed: {failures[:3]}"
    assert len(answers) == 100
    upstreams = set(_upstreams_since(before))
    assert len({u.split(",")[0] for u in upstreams}) >= 2, f"one replica served everything: {upstreams}"
