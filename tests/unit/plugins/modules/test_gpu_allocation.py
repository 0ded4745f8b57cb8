"""Unit tests for the gpubox.llm.gpu_allocation module.

A fake ``nvidia-smi`` written to a tmp dir replays the recorded outputs in
tests/unit/fixtures/nvidia_smi/<case>/ (query_gpu.csv, compute_apps.csv); a fake proc root in
tmp_path holds ``<pid>/cgroup`` and ``<pid>/comm`` as listed in that case's allocation.yml; a
fake ``docker`` answers ``docker container inspect`` from the case's ``containers`` map.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic

from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_smi import QUERY_GPU_FIELDS
from ansible_collections.gpubox.llm.plugins.modules import gpu_allocation

from .utils import run_module

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "nvidia_smi"))
BOXES = ["l40s_4x", "h100_sxm_8x", "rtx3090_8x", "a100_mig", "rtx6000_blackwell_1x", "l4_idle"]
QUERY_GPU = "--query-gpu=" + ",".join(QUERY_GPU_FIELDS)
QUERY_APPS = "--query-compute-apps=pid,gpu_uuid,used_memory,process_name"
QWEN_ID = "b7595ee7402dc0f646332fadc3def1ff6283679a8c1deaac542dc4e1f10294cd"

FAKE_SMI = r'''#!{python}
"""Fake nvidia-smi: replays recorded output for the query it is asked to run."""
import json
import os
import sys

CONF = json.loads({conf!r})
args = sys.argv[1:]
with open(CONF["log"], "a") as log:
    log.write(json.dumps(args) + "\n")
if "--format=csv,noheader,nounits" not in args:
    cmd = None
elif args[0] == CONF["query_gpu"]:
    cmd = "query_gpu"
elif args[0] == CONF["query_apps"]:
    cmd = "compute_apps"
else:
    cmd = None
if cmd is None:
    print("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
    sys.exit(2)
override = CONF["override"].get(cmd)
if override is not None:
    sys.stdout.write(override["output"])
    sys.exit(override["rc"])
for name in (cmd + (".csv"), "output.txt"):
    path = os.path.join(CONF["case"], name)
    if os.path.exists(path):
        with open(path) as handle:
            sys.stdout.write(handle.read())
        break
else:
    sys.stderr.write("fake nvidia-smi: no recorded output for %s\n" % cmd)
    sys.exit(99)
sys.exit(CONF["rc"].get(cmd, CONF["rc"].get("default", 0)))
'''

FAKE_DOCKER = r'''#!{python}
"""Fake docker: container inspect --format '{{{{.Id}}}}' or '{{{{.Id}}}} {{{{.Name}}}}' from a map id -> name."""
import json
import sys

CONF = json.loads({conf!r})
args = sys.argv[1:]
with open(CONF["log"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:3] != ["container", "inspect", "--format"]:
    sys.exit(125)
fmt, refs = args[3], args[4:]
rc = 0
for ref in refs:
    found = [i for i, n in CONF["containers"].items() if ref in (n, i) or (len(ref) >= 4 and i.startswith(ref))]
    if not found:
        sys.stderr.write("Error: No such container: %s\n" % ref)
        rc = 1
        continue
    cid = found[0]
    print(fmt.replace("{{{{.Id}}}}", cid).replace("{{{{.Name}}}}", "/" + CONF["containers"][cid]))
sys.exit(rc)
'''


def load(case, name):
    with open(os.path.join(FIXTURES, case, name)) as handle:
        return yaml.safe_load(handle)


def write_script(path, template, conf):
    with open(path, "w") as handle:
        handle.write(template.format(python=sys.executable, conf=json.dumps(conf)))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def write_smi(tmp_path, case, override=None):
    log = str(tmp_path / "smi.log")
    conf = {
        "case": os.path.join(FIXTURES, case),
        "rc": load(case, "expected.yml")["commands"],
        "query_gpu": QUERY_GPU,
        "query_apps": QUERY_APPS,
        "override": override or {},
        "log": log,
    }
    return write_script(tmp_path / "nvidia-smi", FAKE_SMI, conf), log


def write_docker(tmp_path, containers):
    log = str(tmp_path / "docker.log")
    return write_script(tmp_path / "docker", FAKE_DOCKER, {"containers": containers, "log": log}), log


def write_proc(root, processes):
    root.mkdir(exist_ok=True)
    for pid, entry in processes.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "cgroup").write_text(entry["cgroup"])
        (root / str(pid) / "comm").write_text(entry["comm"] + "\n")
    return str(root)


def calls(log):
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(autouse=True)
def no_container_cli():
    """Keep the machine's real docker/podman out of the tests; tests that want one pass container_cli."""
    real = basic.AnsibleModule.get_bin_path

    def get_bin_path(self, arg, *args, **kwargs):
        if arg in ("docker", "podman"):
            return None
        return real(self, arg, *args, **kwargs)

    with mock.patch.object(basic.AnsibleModule, "get_bin_path", get_bin_path):
        yield


@pytest.fixture
def warnings():
    seen = []
    with mock.patch.object(basic.AnsibleModule, "warn", lambda self, msg, **kw: seen.append(msg)):
        yield seen


def run_case(tmp_path, case, *, args=None, override=None, proc=None, docker=True, check_mode=False):
    """Run the module on ``case``; ``args`` replace the case's own expectations where given."""
    allocation = load(case, "allocation.yml")
    smi, log = write_smi(tmp_path, case, override=override)
    params = {
        "nvidia_smi_path": smi,
        "proc_path": write_proc(tmp_path / "proc", allocation["proc"] if proc is None else proc),
        "expect": allocation["expect"],
    }
    if docker and allocation["containers"]:
        params["container_cli"], _docker_log = write_docker(tmp_path, allocation["containers"])
    params.update(args or {})
    result, failed = run_module(gpu_allocation.main, params, check_mode=check_mode)
    return result, failed, log


def replace_apps(case, *pairs):
    """compute_apps.csv of ``case`` with text replacements, as an override."""
    with open(os.path.join(FIXTURES, case, "compute_apps.csv")) as handle:
        text = handle.read()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return {"compute_apps": {"rc": 0, "output": text}}


# --- every recorded box, as deployed ------------------------------------------------------------


@pytest.mark.parametrize("case", BOXES)
def test_box_matches_expected(case, tmp_path, warnings):
    exp = load(case, "allocation.yml")["expected"]
    result, failed, log = run_case(tmp_path, case)
    assert failed is exp.get("failed", False), result
    assert result["changed"] is False
    assert "skipped" not in result
    if "owners" in exp:
        got = [{k: o[k] for k in ("name", "gpus_seen", "pids")} for o in result["owners"]]
        assert got == exp["owners"]
        assert all(o["ok"] for o in result["owners"])
        assert result["problems"] == []
    else:
        assert result["problems"] == exp["problems"]
        assert result["msg"] == "; ".join(exp["problems"])
    owners = {g["index"]: [p["owner"] for p in g["processes"]] for g in result["gpus"]}
    assert owners == exp["gpu_owners"]
    assert sorted({p["pid"] for p in result["foreign"]}) == exp["foreign"]
    # Exactly the two read-only queries.
    assert calls(log) == [
        [QUERY_GPU, "--format=csv,noheader,nounits"],
        [QUERY_APPS, "--format=csv,noheader,nounits"],
    ]


def test_l40s_table_and_message(tmp_path):
    result, failed, _log = run_case(tmp_path, "l40s_4x")
    assert not failed
    assert result["msg"] == "GPU allocation as expected: vllm@chat on GPUs 0,1; vllm@coder on GPUs 2,3"
    gpu0 = result["gpus"][0]
    assert {k: gpu0[k] for k in ("index", "uuid", "name", "memory_total_mib", "used_memory_mib")} == {
        "index": 0,
        "uuid": "GPU-8623121d-e0bb-f37a-9459-4d8b75673fca",
        "name": "NVIDIA L40S",
        "memory_total_mib": 46068,
        "used_memory_mib": 41520,
    }
    assert gpu0["processes"] == [
        {
            "pid": 48213,
            "process_name": "VLLM::Worker_TP0",
            "used_memory_mib": 40986,
            "owner": "vllm@chat.service",
            "owner_type": "unit",
            "unit": "vllm@chat.service",
            "container_id": None,
            "container_name": None,
            "runtime": None,
            "pod_uid": None,
            "cgroup": "/system.slice/system-vllm.slice/vllm@chat.service",
            "owner_unknown_reason": None,
            "expected_by": "vllm@chat",
        }
    ]
    chat = result["owners"][0]
    assert chat == {
        "name": "vllm@chat",
        "unit": "vllm@chat.service",
        "container": None,
        "container_id": None,
        "expected_gpus": [0, 1],
        "gpus_seen": [0, 1],
        "pids": [48213, 48214],
        "gpu_memory": [{"index": 0, "used_memory_mib": 40986}, {"index": 1, "used_memory_mib": 40986}],
        "ok": True,
        "problems": [],
    }
    # The UUID in the coder expectation became index 3.
    assert result["owners"][1]["expected_gpus"] == [2, 3]


# --- wrong allocations -----------------------------------------------------------------------


def test_swapped_gpus(tmp_path):
    # chat's second worker landed on GPU 2, coder's first on GPU 1 (e.g. CUDA_VISIBLE_DEVICES in the wrong order).
    gpu1, gpu2 = "GPU-aa2078e5-484d-1466-3ecb-55e90827174a", "GPU-34d24c28-aa10-cae2-a318-d8b3f637f221"
    override = replace_apps("l40s_4x", (f"48214, {gpu1}", f"48214, {gpu2}"), (f"48731, {gpu2}", f"48731, {gpu1}"))
    result, failed, _log = run_case(tmp_path, "l40s_4x", override=override)
    assert failed
    assert result["problems"] == [
        "vllm@chat uses GPU 2, expected 0,1",
        "vllm@chat is not on GPU 1 (expected 0,1, uses 0,2)",
        "vllm@coder uses GPU 1, expected 2,3",
        "vllm@coder is not on GPU 2 (expected 2,3, uses 1,3)",
    ]
    assert result["msg"] == "; ".join(result["problems"])
    assert [o["ok"] for o in result["owners"]] == [False, False]
    assert result["owners"][0]["gpus_seen"] == [0, 2]
    # The table is returned with the failure.
    assert [p["owner"] for p in result["gpus"][2]["processes"]] == ["vllm@chat.service"]


def test_instance_on_no_gpu(tmp_path):
    override = replace_apps("l40s_4x", ("48213,", "#"), ("48214,", "#"))
    override["compute_apps"]["output"] = "\n".join(
        line for line in override["compute_apps"]["output"].splitlines() if not line.startswith("#")
    )
    result, failed, _log = run_case(tmp_path, "l40s_4x", override=override)
    assert failed
    assert result["problems"] == ["vllm@chat is on no GPU (expected 0,1)"]
    assert result["owners"][0]["gpus_seen"] == []
    assert result["owners"][1]["ok"] is True


def test_memory_below_the_minimum(tmp_path):
    override = replace_apps(
        "l40s_4x",
        (
            "48213, GPU-8623121d-e0bb-f37a-9459-4d8b75673fca, 40986",
            "48213, GPU-8623121d-e0bb-f37a-9459-4d8b75673fca, 812",
        ),
    )
    expect = [{"unit": "vllm@chat", "gpus": [0, 1], "min_memory_mib": 20000}, {"unit": "vllm@coder", "gpus": [2, 3]}]
    result, failed, _log = run_case(tmp_path, "l40s_4x", args={"expect": expect}, override=override)
    assert failed
    assert result["problems"] == ["vllm@chat uses 812 MiB on GPU 0, expected at least 20000"]
    assert result["owners"][0]["gpu_memory"][0] == {"index": 0, "used_memory_mib": 812}


def test_memory_sums_processes_of_one_owner_on_one_gpu(tmp_path):
    # An API server context (512 MiB) next to the worker on GPU 0: both count for vllm@chat.
    override = replace_apps(
        "l40s_4x",
        ("48213, GPU-8623121d", "48200, GPU-8623121d-e0bb-f37a-9459-4d8b75673fca, 512, vllm\n48213, GPU-8623121d"),
    )
    proc = dict(load("l40s_4x", "allocation.yml")["proc"])
    proc["48200"] = {"comm": "vllm", "cgroup": "0::/system.slice/system-vllm.slice/vllm@chat.service\n"}
    result, failed, _log = run_case(tmp_path, "l40s_4x", override=override, proc=proc)
    assert not failed, result
    assert result["owners"][0]["gpu_memory"][0] == {"index": 0, "used_memory_mib": 41498}
    assert result["owners"][0]["pids"] == [48200, 48213, 48214]


def test_mig_memory_not_available_warns(tmp_path, warnings):
    result, failed, _log = run_case(tmp_path, "a100_mig")
    assert not failed, result
    container = result["owners"][1]
    assert container["gpu_memory"] == [{"index": 0, "used_memory_mib": None}]
    assert container["container_id"] == "a082d0b68261"
    (warning,) = warnings
    assert "container a082d0b68261: nvidia-smi does not report the memory" in warning
    assert "min_memory_mib was not checked" in warning
    process = result["gpus"][0]["processes"][0]
    assert process["runtime"] == "containerd"
    assert process["pod_uid"] == "6f1c9a52-0c7d-4b1e-9d8e-1a2b3c4d5e6f"
    assert process["owner"] == "a082d0b68261"


# --- foreign processes -----------------------------------------------------------------------


def test_foreign_process_reported_but_allowed_by_default(tmp_path):
    result, failed, _log = run_case(tmp_path, "rtx3090_8x")
    assert not failed
    assert result["foreign"] == [
        {
            "pid": 4242,
            "gpu_index": 6,
            "gpu_uuid": "GPU-a1e8f7eb-eb9d-39a7-14b1-091d865a0665",
            "process_name": "/home/ana/.venv/bin/python3",
            "owner": "session-3.scope",
            "owner_type": "unit",
            "used_memory_mib": 21424,
        }
    ]
    assert result["msg"] == (
        "GPU allocation as expected: container vllm-qwen on GPUs 0,1,2,3; vllm@coder on GPUs 4,5 "
        "(1 foreign GPU process(es), see foreign)"
    )


def test_forbid_foreign(tmp_path):
    result, failed, _log = run_case(tmp_path, "rtx3090_8x", args={"forbid_foreign": True})
    assert failed
    assert result["problems"] == [load("rtx3090_8x", "allocation.yml")["expected"]["foreign_problem"]]
    assert result["msg"] == "foreign process 4242 (/home/ana/.venv/bin/python3, session-3.scope) uses GPU 6"
    assert all(o["ok"] for o in result["owners"])


def test_forbid_foreign_one_message_per_pid_and_unknown_owners(tmp_path, warnings):
    # A process on two GPUs whose /proc entry is gone, and an unexpected container.
    override = {
        "compute_apps": {
            "rc": 0,
            "output": "4242, GPU-34d24c28-aa10-cae2-a318-d8b3f637f221, 300, python3\n"
            "4242, GPU-46f14170-5930-0965-c313-063d20dd02f4, 300, python3\n"
            "777, GPU-8623121d-e0bb-f37a-9459-4d8b75673fca, 9000, [N/A]\n",
        }
    }
    proc = {"777": {"comm": "ollama", "cgroup": f"0::/system.slice/docker-{QWEN_ID}.scope\n"}}
    result, failed, _log = run_case(
        tmp_path, "l40s_4x", args={"expect": [], "forbid_foreign": True}, override=override, proc=proc
    )
    assert failed
    assert result["problems"] == [
        "foreign process 4242 (python3, owner unknown) uses GPUs 2,3",
        f"foreign process 777 (ollama, container {QWEN_ID[:12]}) uses GPU 0",
    ]
    assert result["gpus"][0]["processes"][0]["process_name"] == "ollama"  # from comm
    (warning,) = warnings
    assert warning.startswith("1 GPU process(es) have no known owner:")
    assert "does not exist" in warning


def test_nothing_expected_reports_the_table(tmp_path):
    result, failed, _log = run_case(tmp_path, "h100_sxm_8x", args={"expect": []})
    assert not failed
    assert result["owners"] == []
    assert len(result["foreign"]) == 8
    assert result["msg"] == "Nothing expected; see gpus for who uses which GPU (8 foreign GPU process(es), see foreign)"


# --- containers -------------------------------------------------------------------------------


def test_container_name_resolved_with_the_cli(tmp_path):
    result, failed, _log = run_case(tmp_path, "rtx3090_8x")
    assert not failed
    qwen = result["owners"][0]
    assert qwen["container_id"] == QWEN_ID
    process = result["gpus"][0]["processes"][0]
    assert (process["owner"], process["container_name"], process["container_id"]) == ("vllm-qwen", "vllm-qwen", QWEN_ID)
    assert process["runtime"] == "docker"
    docker_calls = calls(str(tmp_path / "docker.log"))
    assert docker_calls == [
        ["container", "inspect", "--format", "{{.Id}}", "vllm-qwen"],
        ["container", "inspect", "--format", "{{.Id}} {{.Name}}", QWEN_ID],
    ]


def test_container_cli_found_in_path(tmp_path):
    docker, _log = write_docker(tmp_path, {QWEN_ID: "vllm-qwen"})

    def get_bin_path(self, arg, *args, **kwargs):
        return docker if arg == "docker" else None

    with mock.patch.object(basic.AnsibleModule, "get_bin_path", get_bin_path):
        result, failed, _log = run_case(tmp_path, "rtx3090_8x", docker=False)
    assert not failed, result
    assert result["owners"][0]["container_id"] == QWEN_ID


def test_container_name_without_cli_is_a_problem(tmp_path):
    result, failed, _log = run_case(tmp_path, "rtx3090_8x", docker=False)
    assert failed
    (problem,) = result["problems"]
    assert problem.startswith("container vllm-qwen: a container name needs the docker or podman CLI")
    assert "give the container ID" in problem
    # Without names the table shows short IDs.
    assert result["gpus"][0]["processes"][0]["owner"] == QWEN_ID[:12]


def test_container_id_prefix_without_cli(tmp_path):
    expect = [{"container": QWEN_ID[:12].upper(), "gpus": [0, 1, 2, 3]}, {"unit": "vllm@coder", "gpus": [4, 5]}]
    result, failed, _log = run_case(tmp_path, "rtx3090_8x", args={"expect": expect}, docker=False)
    assert not failed, result
    assert result["owners"][0]["name"] == f"container {QWEN_ID[:12].upper()}"
    assert result["owners"][0]["pids"] == [20511, 20512, 20513, 20514]


def test_unknown_container_name(tmp_path):
    expect = [{"container": "vllm-missing", "gpus": [0]}]
    result, failed, _log = run_case(tmp_path, "rtx3090_8x", args={"expect": expect})
    assert failed
    assert result["problems"] == [
        "container vllm-missing: docker knows no such container (Error: No such container: vllm-missing)"
    ]


def test_missing_container_cli_path_warns(tmp_path, warnings):
    expect = [{"container": QWEN_ID[:12], "gpus": [0, 1, 2, 3]}, {"unit": "vllm@coder", "gpus": [4, 5]}]
    args = {"expect": expect, "container_cli": str(tmp_path / "nope")}
    result, failed, _log = run_case(tmp_path, "rtx3090_8x", args=args, docker=False)
    assert not failed, result
    assert any("container_cli" in w and "does not exist" in w for w in warnings)


# --- processes nvidia-smi reports but /proc does not show ------------------------------------


def test_pids_of_another_pid_namespace(tmp_path, warnings):
    result, failed, _log = run_case(tmp_path, "l40s_4x", proc={})
    assert failed
    assert result["problems"][0] == (
        "vllm@chat is on no GPU (expected 0,1; 4 GPU process line(s) have no known owner, see the warnings)"
    )
    (warning,) = warnings
    assert "4 GPU process(es) have no known owner" in warning
    assert "another PID namespace" in warning
    assert {p["owner_type"] for g in result["gpus"] for p in g["processes"]} == {"none"}


def test_process_on_a_gpu_that_query_gpu_does_not_list(tmp_path, warnings):
    override = {"compute_apps": {"rc": 0, "output": "5, MIG-1a2b, 100, python3\n"}}
    proc = {"5": {"comm": "python3", "cgroup": "0::/system.slice/job.service\n"}}
    result, failed, _log = run_case(
        tmp_path, "l40s_4x", args={"expect": [], "forbid_foreign": True}, override=override, proc=proc
    )
    assert failed
    assert result["problems"] == ["foreign process 5 (python3, job.service) uses GPU MIG-1a2b"]
    assert result["foreign"][0]["gpu_index"] is None
    assert warnings == ["nvidia-smi reports process 5 on GPU MIG-1a2b, which --query-gpu does not list"]


# --- skipped hosts ----------------------------------------------------------------------------


def assert_skipped(result, failed, reason):
    assert not failed, result
    assert result["skipped"] is True
    assert result["changed"] is False
    assert reason in result["skip_reason"]
    assert result["msg"] == result["skip_reason"]
    assert (result["gpus"], result["owners"], result["foreign"], result["problems"]) == ([], [], [], [])


def test_cpu_only_host_without_nvidia_smi(tmp_path):
    params = {"expect": [{"unit": "vllm@chat", "gpus": [0]}]}
    with mock.patch.object(basic.AnsibleModule, "get_bin_path", return_value=None):
        result, failed = run_module(gpu_allocation.main, params)
    assert_skipped(result, failed, "nvidia-smi was not found")


def test_nonexistent_nvidia_smi_path_skips(tmp_path, warnings):
    result, failed = run_module(gpu_allocation.main, {"nvidia_smi_path": str(tmp_path / "nope")})
    assert_skipped(result, failed, "nvidia-smi was not found")
    assert any("does not exist" in w for w in warnings)


def test_no_devices_skips(tmp_path):
    smi, log = write_smi(tmp_path, "no_devices")
    result, failed = run_module(gpu_allocation.main, {"nvidia_smi_path": smi})
    assert_skipped(result, failed, "nvidia-smi found no GPU")
    assert len(calls(log)) == 1


def test_empty_gpu_list_skips(tmp_path):
    smi, _log = write_smi(tmp_path, "l40s_4x", override={"query_gpu": {"rc": 0, "output": ""}})
    result, failed = run_module(gpu_allocation.main, {"nvidia_smi_path": smi})
    assert_skipped(result, failed, "nvidia-smi lists no GPU")


# --- nvidia-smi failures ----------------------------------------------------------------------


@pytest.mark.parametrize("case, text", [("driver_mismatch", "Driver/library version mismatch"), ("no_driver", "rc=9")])
def test_driver_errors_fail(case, text, tmp_path):
    smi, _log = write_smi(tmp_path, case)
    result, failed = run_module(gpu_allocation.main, {"nvidia_smi_path": smi})
    assert failed
    assert text in result["msg"]
    assert "skipped" not in result


def test_compute_apps_failure_fails(tmp_path):
    override = {"compute_apps": {"rc": 15, "output": "Unable to query processes: Unknown Error\n"}}
    result, failed, _log = run_case(tmp_path, "l40s_4x", override=override)
    assert failed
    assert result["rc"] == 15
    assert 'rc=15: "Unable to query processes: Unknown Error"' in result["msg"]


def test_malformed_compute_apps_fails(tmp_path):
    override = {"compute_apps": {"rc": 0, "output": "48213, GPU-8623121d\n"}}
    result, failed, _log = run_case(tmp_path, "l40s_4x", override=override)
    assert failed
    assert "malformed nvidia-smi --query-compute-apps output, line 1: expected 4 fields, got 2" in result["msg"]


# --- invalid expectations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "expect, message",
    [
        (
            [{"unit": "vllm@chat", "container": "chat", "gpus": [0]}],
            "expect[0]: give either unit or container, not both (unit=vllm@chat, container=chat)",
        ),
        ([{"gpus": [0]}], "expect[0]: give unit (a systemd unit such as vllm@chat.service) or container"),
        ([{"unit": " ", "gpus": [0]}], "expect[0]: give unit"),
        (
            [{"unit": "vllm@a", "gpus": [0]}, {"unit": "vllm@b", "gpus": []}],
            "expect[1] (vllm@b): gpus must list at least one GPU index or UUID",
        ),
        ([{"unit": "vllm@a", "gpus": ["first"]}], "expect[0] (vllm@a): 'first' is neither a GPU index nor a GPU UUID"),
        ([{"unit": "vllm@a", "gpus": [True]}], "expect[0] (vllm@a): True is neither a GPU index nor a GPU UUID"),
        ([{"unit": "vllm@a", "gpus": [-1]}], "expect[0] (vllm@a): -1 is neither a GPU index"),
        (
            [{"container": "c1", "gpus": ["MIG-8c2b7b58-a2d8-5b9e-9a5b-f7f0b8a5d9f1"]}],
            "expect[0] (container c1): MIG-8c2b7b58-a2d8-5b9e-9a5b-f7f0b8a5d9f1 is a MIG device; give the parent GPU",
        ),
        (
            [{"unit": "vllm@a", "gpus": [0], "min_memory_mib": -5}],
            "expect[0] (vllm@a): min_memory_mib must not be negative",
        ),
        (
            [{"unit": "vllm@a", "gpus": [0]}, {"unit": "vllm@a.service", "gpus": [1]}],
            "vllm@a is expected more than once in expect",
        ),
    ],
)
def test_invalid_expectations_fail_before_nvidia_smi(expect, message, tmp_path):
    smi, log = write_smi(tmp_path, "l40s_4x")
    result, failed = run_module(gpu_allocation.main, {"nvidia_smi_path": smi, "expect": expect})
    assert failed
    assert message in result["msg"], result["msg"]
    assert calls(log) == []


def test_invalid_expectations_fail_even_on_cpu_hosts():
    with mock.patch.object(basic.AnsibleModule, "get_bin_path", return_value=None):
        result, failed = run_module(gpu_allocation.main, {"expect": [{"gpus": [0]}]})
    assert failed
    assert "give unit" in result["msg"]


@pytest.mark.parametrize(
    "gpus, message",
    [
        ([0, 4], "expect[0] (vllm@chat): GPU 4 does not exist; nvidia-smi lists GPUs 0,1,2,3"),
        (
            ["GPU-00000000-0000-0000-0000-000000000000"],
            "expect[0] (vllm@chat): no GPU has UUID GPU-00000000-0000-0000-0000-000000000000; nvidia-smi lists "
            "0: GPU-8623121d-e0bb-f37a-9459-4d8b75673fca, 1: GPU-aa2078e5",
        ),
    ],
)
def test_gpus_the_host_does_not_have(gpus, message, tmp_path):
    result, failed, log = run_case(tmp_path, "l40s_4x", args={"expect": [{"unit": "vllm@chat", "gpus": gpus}]})
    assert failed
    assert message in result["msg"]
    assert len(calls(log)) == 1  # compute apps not queried


def test_mixed_indices_and_uuids_in_any_case(tmp_path):
    expect = [
        {"unit": "vllm@chat", "gpus": ["gpu-8623121d-e0bb-f37a-9459-4d8b75673fca", "1", 0]},
        {"unit": "vllm@coder", "gpus": [2, 3]},
    ]
    result, failed, _log = run_case(tmp_path, "l40s_4x", args={"expect": expect})
    assert not failed, result
    assert result["owners"][0]["expected_gpus"] == [0, 1]


# --- check mode -------------------------------------------------------------------------------


def test_check_mode_same_result(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "check").mkdir()
    normal, failed, _log = run_case(tmp_path / "normal", "rtx3090_8x")
    assert not failed
    checked, failed, log = run_case(tmp_path / "check", "rtx3090_8x", check_mode=True)
    assert not failed
    assert checked == normal
    assert len(calls(log)) == 2
