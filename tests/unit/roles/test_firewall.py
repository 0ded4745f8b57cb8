"""The firewall role's preflight, run on localhost in check mode (no firewall is touched)."""

from __future__ import annotations

import pytest

from .rolerun import os_facts, run_role


def _run(tmp_path, facts="debian12", **variables):
    return run_role(tmp_path, "firewall", variables=variables, facts=os_facts(facts), tags=["firewall_preflight"])


def test_closing_ssh_is_allowed_when_ansible_does_not_use_it(tmp_path):
    # Over a local (or docker) connection nothing locks the play out; over SSH preflight refuses it.
    run = _run(tmp_path, firewall_allow_ssh=False)
    assert run.rc == 0, run.output[-3000:]


@pytest.mark.parametrize("port", [0, 70000])
def test_refuses_a_port_out_of_range(tmp_path, port):
    run = _run(tmp_path, firewall_allow=[{"port": port}])
    assert run.rc != 0
    assert "between 1 and 65535" in run.failure()


@pytest.mark.parametrize(("facts", "backend"), [("debian12", "ufw"), ("ubuntu2404", "ufw"), ("rocky9", "firewalld")])
def test_picks_the_distribution_firewall(tmp_path, facts, backend):
    run = _run(tmp_path, facts=facts, firewall_allow=[{"port": 8443, "sources": ["10.0.0.1"]}])
    assert run.rc == 0, run.output[-3000:]
    assert run.result("Resolve the firewall")["ansible_facts"]["__firewall_backend"] == backend


def test_disabled_does_nothing(tmp_path):
    run = _run(tmp_path, firewall_enabled=False, firewall_allow=[{"port": 0}])
    assert run.rc == 0
    role_tasks = [
        (name, result)
        for name, result in run.tasks()
        if name.startswith("gpubox.llm.firewall :") and "Validating arguments" not in name
    ]
    assert role_tasks
    assert all(result.get("skipped") for _name, result in role_tasks), role_tasks
