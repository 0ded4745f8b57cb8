"""gateway_routes: which replicas serve which model, and what the gateway cannot reach."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gpubox.llm.plugins.filter.gateway import gateway_firewall, gateway_routes


def _inst(name, port, **extra):
    return {"name": name, "model": "/srv/m", "port": port, **extra}


def test_replicas_on_two_hosts_become_one_upstream():
    hostvars = {
        "s1": {
            "ansible_host": "10.0.0.2",
            "vllm_instances": [_inst("chat", 8000, served_model_name="qwen", host="0.0.0.0")],
        },
        "s2": {"vllm_instances": [_inst("chat", 8000, served_model_name="qwen", host="10.0.0.3")]},
    }
    routes = gateway_routes(hostvars, ["s1", "s2"], "gw")
    assert routes["problems"] == []
    [qwen] = routes["models"]
    assert qwen["model"] == "qwen"
    assert qwen["upstream"] == "gpubox_m0"
    assert [s["address"] for s in qwen["servers"]] == ["10.0.0.2:8000", "10.0.0.3:8000"]
    assert qwen["roles"] == ["chat", "edit", "apply"]


def test_models_are_sorted_with_their_roles_and_tasks():
    hostvars = {
        "gw": {
            "vllm_instances": [
                _inst("emb", 8001, task="embed"),
                _inst("ac", 8002, served_model_name="coder", roles=["autocomplete"]),
                _inst("off", 8003, enabled=False),
            ]
        }
    }
    routes = gateway_routes(hostvars, ["gw"], "gw")
    assert [(m["model"], m["task"], m["roles"], m["upstream"]) for m in routes["models"]] == [
        ("coder", "generate", ["autocomplete"], "gpubox_m0"),
        ("emb", "embed", ["embed"], "gpubox_m1"),
    ]
    # The gateway's own instances are reached on loopback.
    assert routes["models"][0]["servers"][0]["address"] == "127.0.0.1:8002"


def test_remote_loopback_instance_is_a_problem():
    routes = gateway_routes({"s1": {"vllm_instances": [_inst("chat", 8000)]}}, ["s1"], "gw")
    assert routes["models"] == []
    assert "binds 127.0.0.1" in routes["problems"][0]
    assert "private address" in routes["problems"][0]


def test_wildcard_bind_uses_the_backend_address_then_ansible_host():
    hostvars = {
        "s1": {
            "gateway_backend_address": "192.168.1.5",
            "ansible_host": "s1.example",
            "vllm_instances": [_inst("a", 1, host="0.0.0.0")],
        },
        "s2": {"vllm_instances": [_inst("b", 2, host="::")]},
    }
    servers = {m["model"]: m["servers"][0]["address"] for m in gateway_routes(hostvars, ["s1", "s2"], "gw")["models"]}
    assert servers == {"a": "192.168.1.5:1", "b": "s2:2"}


def test_ipv6_addresses_are_bracketed():
    routes = gateway_routes({"s1": {"vllm_instances": [_inst("a", 8000, host="fd00::5")]}}, ["s1"], "gw")
    assert routes["models"][0]["servers"][0]["address"] == "[fd00::5]:8000"


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"api_key": "another-key-0123456789"}, "different api_key"),
        ({"task": "embed"}, "with task embed"),
    ],
)
def test_replicas_must_agree(second, message):
    hostvars = {
        "s1": {"vllm_instances": [_inst("chat", 8000, served_model_name="m", host="10.0.0.2")]},
        "s2": {"vllm_instances": [_inst("chat", 8000, served_model_name="m", host="10.0.0.3", **second)]},
    }
    problems = gateway_routes(hostvars, ["s1", "s2"], "gw")["problems"]
    assert len(problems) == 1
    assert message in problems[0]


def test_no_serving_hosts_is_a_problem():
    assert "no serving hosts" in gateway_routes({}, [], "gw")["problems"][0]


def test_bad_names_roles_and_duplicate_addresses():
    hostvars = {
        "s1": {
            "vllm_instances": [
                _inst("a", 8000, served_model_name="bad'name", host="10.0.0.2"),
                _inst("b", 8001, host="10.0.0.2", roles=["chat", "speak"]),
                _inst("c", 8002, served_model_name="dup", host="10.0.0.2"),
                _inst("d", 8002, served_model_name="dup", host="10.0.0.2"),
            ]
        }
    }
    problems = " ".join(gateway_routes(hostvars, ["s1"], "gw")["problems"])
    assert "bad'name" in problems
    assert "'speak'" in problems
    assert "same address 10.0.0.2:8002" in problems


def test_unknown_host_and_bad_shapes():
    with pytest.raises(AnsibleFilterError, match="not in the inventory"):
        gateway_routes({}, ["nope"], "gw")
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        gateway_routes({}, "s1", "gw")
    assert gateway_routes({"s1": {"vllm_instances": {"a": 1}}}, ["s1"], "gw")["problems"] == [
        "s1: vllm_instances must be a list"
    ]


def _fw_hostvars():
    qwen = {"served_model_name": "qwen", "host": "0.0.0.0"}
    return {
        "gw": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.1"}}},
        "gw2": {"gateway_source_address": "10.0.0.9", "gateway_backend_hosts": ["s2"]},
        "s1": {"ansible_host": "10.0.0.2", "vllm_instances": [_inst("chat", 8000, **qwen), _inst("local", 9000)]},
        "s2": {"ansible_host": "10.0.0.3", "vllm_instances": [_inst("chat", 8000, **qwen)]},
    }


def test_firewall_admits_only_the_gateways_that_route_to_the_host():
    hostvars = _fw_hostvars()
    s1 = gateway_firewall(hostvars, ["gw", "gw2"], "s1", ["s1", "s2"])
    assert s1 == {
        "rules": [{"port": 8000, "proto": "tcp", "sources": ["10.0.0.1"], "comment": "gpubox vllm@chat"}],
        "problems": [],
    }
    # gw2 routes to s2 only; both gateways reach s2.
    assert gateway_firewall(hostvars, ["gw", "gw2"], "s2", ["s1", "s2"])["rules"][0]["sources"] == [
        "10.0.0.1",
        "10.0.0.9",
    ]


def test_firewall_needs_no_rule_on_the_gateway_itself_and_reports_unknown_addresses():
    hostvars = _fw_hostvars()
    hostvars["s1"]["vllm_instances"].append(_inst("x", 8001, host="127.0.0.1"))
    assert gateway_firewall(hostvars, ["s1"], "s1", ["s1"]) == {"rules": [], "problems": []}
    del hostvars["gw"]["ansible_facts"]
    problems = gateway_firewall(hostvars, ["gw"], "s2", ["s2"])["problems"]
    assert "address of gateway gw is unknown" in problems[0]
