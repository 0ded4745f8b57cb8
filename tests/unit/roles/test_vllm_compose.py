"""The vllm role with vllm_deploy_method=compose: the rendered compose project, and bad input refused in preflight.

Each case runs the real role on localhost in check mode (rolerun). A fake ``docker`` answers ``docker compose version``
and ``docker info`` the way a host with Docker (or without compose, or with a stopped daemon) does; any other docker
call fails the fake, so check mode on a new host must not run compose. A fake nvidia-smi (recorded 4x L40S) stands in
for a GPU host. The rendered compose.yaml is read from the template task's diff.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest
import yaml

from ..plugins.modules.test_gpu_info import write_fake
from .rolerun import os_facts, run_role

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HF_CONFIGS = pathlib.Path(ROOT) / "tests" / "unit" / "fixtures" / "hf_configs"
VENV_PYTHON = [os.path.dirname(sys.executable) + "/python", "-m", "vllm.entrypoints.openai.api_server"]
FAKE_DOCKER = """#!{python}
import json, sys
conf = json.loads({conf!r})
args = sys.argv[1:]
with open(conf["log"], "a") as handle:
    handle.write(json.dumps(args) + "\\n")
if args[:2] == ["compose", "version"]:
    if conf["compose"] is None:
        sys.stderr.write("docker: 'compose' is not a docker command.\\nSee 'docker --help'\\n")
        sys.exit(1)
    print(conf["compose"])
    sys.exit(0)
if args[:1] == ["info"]:
    if conf["info"] is None:
        sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                         "Is the docker daemon running?\\n")
        sys.exit(1)
    print(json.dumps(conf["info"]))
    sys.exit(0)
sys.stderr.write("fake docker: unexpected call: " + " ".join(args) + "\\n")
sys.exit(3)
"""
DOCKER_INFO = {"ServerVersion": "26.1.5", "Runtimes": {"io.containerd.runc.v2": {}, "runc": {}}}
NVIDIA_INFO = dict(DOCKER_INFO, Runtimes={"nvidia": {"path": "nvidia-container-runtime"}, "runc": {}})


@pytest.fixture(name="docker")
def fixture_docker(tmp_path, monkeypatch):
    """Install a fake docker first in PATH; returns the log of its calls (one JSON argv per line)."""

    def install(compose="2.26.1", info=None):
        bindir = tmp_path / "dockerbin"
        bindir.mkdir(exist_ok=True)
        log = tmp_path / "docker-calls.log"
        conf = {"compose": compose, "info": DOCKER_INFO if info is None else info, "log": str(log)}
        if info is False:
            conf["info"] = None
        fake = bindir / "docker"
        fake.write_text(FAKE_DOCKER.format(python=sys.executable, conf=json.dumps(conf)))
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        return log

    return install


@pytest.fixture(name="no_docker")
def fixture_no_docker(tmp_path, monkeypatch):
    """A PATH that holds every tool of /usr/bin and /bin except docker."""
    bindir = tmp_path / "nodocker"
    bindir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if name.startswith("docker") or (bindir / name).exists():
                continue
            os.symlink(os.path.join(directory, name), bindir / name)
    monkeypatch.setenv("PATH", str(bindir))


def _model(tmp_path, name="model", config="SmolLM2-135M-Instruct"):
    """A model folder with a real config.json, which preflight's planner sizes (no weights: estimated)."""
    model = tmp_path / name
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text((HF_CONFIGS / f"{config}.json").read_text())
    return str(model)


def _run(tmp_path, variables=None, *, gpus=None, tags=None):
    all_vars = {
        "vllm_deploy_method": "compose",
        "vllm_base_dir": str(tmp_path / "opt"),
        "vllm_config_dir": str(tmp_path / "etc"),
        "vllm_compose_dir": str(tmp_path / "etc" / "compose"),
        "vllm_python": sys.executable,
        "vllm_instances": [{"name": "chat", "model": _model(tmp_path), "port": 8000}],
    }
    all_vars.update(variables or {})
    module_defaults = None
    if gpus:
        bindir = tmp_path / "smi"
        bindir.mkdir(exist_ok=True)
        module_defaults = {"gpubox.llm.gpu_info": {"nvidia_smi_path": write_fake(bindir, gpus)[0]}}
    return run_role(
        tmp_path,
        "vllm",
        variables=all_vars,
        facts=os_facts("debian13"),
        tags=tags,
        module_defaults=module_defaults,
    )


def _why(run):
    """The failure of a run, with the messages of failed loop items."""
    for name, result in run.tasks():
        if result.get("failed"):
            items = [r.get("msg") for r in result.get("results", []) if r.get("failed")]
            return f"{name}: {result.get('msg')} {items}"
    return run.output


def _project(run, tmp_path):
    return yaml.safe_load(run.rendered(str(tmp_path / "etc" / "compose" / "compose.yaml")))


def _docker_calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_cpu_project_with_the_test_image(tmp_path, docker):
    log = docker()
    model = _model(tmp_path, "SmolLM2")
    run = _run(
        tmp_path,
        {
            "vllm_compose_image": "gpubox/vllm-cpu:0.32.0",
            "vllm_compose_entrypoint": VENV_PYTHON,
            "vllm_instances": [
                {
                    "name": "chat",
                    "model": model,
                    "port": 18180,
                    "args": {"dtype": "float32", "enforce_eager": True, "gpu_memory_utilization": 0.1},
                    "api_key": "sk-test-0123456789",
                },
                {"name": "helper", "model": model, "port": 18181, "served_model_name": "smol", "enabled": False},
            ],
        },
    )
    assert run.rc == 0, _why(run)
    project = _project(run, tmp_path)
    assert project["name"] == "gpubox-vllm"
    assert list(project["services"]) == ["chat", "helper"]
    assert project["volumes"] == {"cache": {}}
    chat = project["services"]["chat"]
    assert chat["image"] == "gpubox/vllm-cpu:0.32.0"
    assert chat["entrypoint"] == VENV_PYTHON
    # Not the image's `vllm serve`: the model goes as --model; the args are those of the systemd unit.
    assert chat["command"] == [
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        "18180",
        "--served-model-name",
        "chat",
        # vllm_shutdown_timeout: on stop, in-flight requests finish first.
        "--shutdown-timeout",
        "60",
        "--dtype",
        "float32",
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.1",
    ]
    assert chat["stop_grace_period"] == "120s"
    assert chat["env_file"] == [str(tmp_path / "etc" / "chat.env")]
    assert chat["network_mode"] == "host"
    assert chat["ipc"] == "host"
    assert "shm_size" not in chat
    assert "deploy" not in chat, "no GPU reservation on cpu"
    assert chat["volumes"] == [
        {"type": "bind", "source": model, "target": model, "read_only": True, "bind": {"create_host_path": False}},
        {"type": "volume", "source": "cache", "target": "/var/lib/vllm"},
    ]
    assert chat["restart"] == "unless-stopped"
    assert chat["healthcheck"]["test"][:3] == ["CMD", "python3", "-c"]
    assert "http://127.0.0.1:18180/health" in chat["healthcheck"]["test"][3]
    assert chat["healthcheck"]["start_period"] == "1800s"
    assert "ulimits" not in chat, "the daemon's limits unless vllm_compose_ulimits says otherwise"
    assert chat["labels"]["com.gpubox.vllm.instance"] == "chat"
    assert "profiles" not in chat
    # The API key stays in the 0600 env file.
    assert "sk-test-0123456789" not in run.rendered(str(tmp_path / "etc" / "compose" / "compose.yaml"))
    helper = project["services"]["helper"]
    assert helper["profiles"] == ["disabled"], "a disabled instance is kept behind a profile"
    assert "--served-model-name" in helper["command"]
    # One env file per instance (disabled ones too).
    env = [r for n, r in run.tasks() if n.endswith("Write the instance environment files") and not r.get("skipped")]
    assert len(env) == 1
    assert env[0]["changed"]
    # no_log: the results show nothing but their change (the molecule scenario checks the files' mode).
    assert [r["changed"] for r in env[0]["results"]] == [True, True]
    assert "sk-test-0123456789" not in run.output
    # No venv, no unit: compose mode installs nothing but directories.
    assert not [p for p in run.changed_paths() if "systemd" in p or p.endswith("pip.conf")]
    names = [n for n, r in run.tasks() if not r.get("skipped")]
    assert not [n for n in names if "vLLM into its venv" in n or "vllm@.service" in n]
    # Check mode on a new host: only the version and info questions reach docker.
    assert [c[:2] for c in _docker_calls(log)] == [["compose", "version"], ["info", "--format"]]


def test_cuda_project_reserves_each_instance_gpus(tmp_path, docker):
    docker(info=NVIDIA_INFO)
    model = _model(tmp_path, "Llama-3.1-8B-Instruct", config="Llama-3.1-8B-Instruct")
    run = _run(
        tmp_path,
        {
            "vllm_instances": [
                {"name": "chat", "model": model, "port": 8000, "gpus": [0, 1], "args": {"tensor_parallel_size": 2}},
                {"name": "code", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "port": 8001, "gpus": [3]},
            ],
        },
        gpus="l40s_4x",
    )
    assert run.rc == 0, _why(run)
    services = _project(run, tmp_path)["services"]
    chat, code = services["chat"], services["code"]
    assert chat["image"] == code["image"] == "vllm/vllm-openai:v0.32.0", "the official image, pinned by vllm_version"
    assert "entrypoint" not in chat, "the image's own ENTRYPOINT, vllm serve"
    assert chat["command"][:3] == [model, "--host", "127.0.0.1"], "vllm serve takes the model as its first word"
    assert chat["command"][-2:] == ["--tensor-parallel-size", "2"]
    gpu = {"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}
    assert chat["deploy"] == {"resources": {"reservations": {"devices": [gpu]}}}
    assert code["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["3"]
    # A hub model id has nothing to mount; it downloads into HF_HOME, on the cache volume.
    assert code["volumes"] == [{"type": "volume", "source": "cache", "target": "/var/lib/vllm"}]
    assert code["command"][0] == "Qwen/Qwen2.5-Coder-7B-Instruct"


def test_sized_shm_instead_of_host_ipc(tmp_path, docker):
    docker()
    run = _run(
        tmp_path,
        {
            "vllm_compose_ipc_host": False,
            "vllm_compose_shm_size": "4g",
            "vllm_compose_project": "llm",
            "vllm_compose_ulimits": {"memlock": -1, "nofile": 1048576},
        },
    )
    assert run.rc == 0, _why(run)
    project = _project(run, tmp_path)
    assert project["name"] == "llm"
    chat = project["services"]["chat"]
    assert chat["shm_size"] == "4g"
    assert "ipc" not in chat
    assert chat["image"] == "vllm/vllm-openai-cpu:v0.32.0"
    assert chat["ulimits"] == {"memlock": -1, "nofile": 1048576}


def test_systemd_mode_renders_no_compose_project(tmp_path, docker):
    log = docker()
    run = _run(tmp_path, {"vllm_deploy_method": "systemd"}, tags=["vllm_preflight", "vllm_configure"])
    assert run.rc == 0, _why(run)
    assert not [p for p in run.changed_paths() if "compose" in p]
    assert _docker_calls(log) == [], "systemd mode never asks docker"


@pytest.mark.parametrize(
    ("case", "docker_setup", "expected"),
    [
        ({}, "none", "needs the docker CLI with the compose v2 plugin"),
        ({}, {"compose": None}, "'compose' is not a docker command"),
        ({}, {"compose": "2.12.2"}, "it found compose 2.12.2; community.docker.docker_compose_v2 needs 2.18.0"),
        ({}, {"info": False}, "the docker daemon on localhost does not answer (Cannot connect to the Docker daemon"),
        ({"vllm_device": "cuda", "_gpus": [0]}, {}, "docker on localhost has no nvidia runtime"),
        ({"vllm_compose_image": "vllm/vllm-openai:latest"}, {}, "is not pinned"),
        ({"vllm_compose_image": "registry.local:5000/vllm"}, {}, "is not pinned"),
        ({"vllm_compose_project": "My Project"}, {}, "is not a valid compose project name"),
        (
            {"vllm_compose_ipc_host": False, "vllm_compose_shm_size": "64m"},
            {},
            "vllm_compose_shm_size 64m is smaller than vllm_min_shm_mib=512 MiB",
        ),
        ({"vllm_deploy_method": "podman"}, {}, "vllm_deploy_method"),
    ],
    ids=[
        "compose-without-docker",
        "docker-without-compose-plugin",
        "compose-too-old",
        "daemon-down",
        "cuda-without-nvidia-runtime",
        "unpinned-latest",
        "untagged-image-on-registry-port",
        "bad-project-name",
        "small-shm-size",
        "unknown-method",
    ],
)
def test_bad_input_fails_before_any_change(tmp_path, request, case, docker_setup, expected):
    if docker_setup == "none":
        request.getfixturevalue("no_docker")
    else:
        request.getfixturevalue("docker")(**docker_setup)
    case = dict(case)
    gpus = None
    if "_gpus" in case:
        case["vllm_instances"] = [{"name": "chat", "model": _model(tmp_path), "port": 8000, "gpus": case.pop("_gpus")}]
        gpus = "l40s_4x"
    run = _run(tmp_path, case, gpus=gpus, tags=["vllm_preflight"])
    assert run.rc != 0, run.output
    message = _why(run)
    assert expected in " ".join(message.split()), message
    assert not [n for n, r in run.tasks() if r.get("changed")], "a change before the failure"
