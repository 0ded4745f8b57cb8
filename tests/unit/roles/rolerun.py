"""Run one role of the collection against localhost in check mode, as another OS, and read the results.

``run_role`` writes a one-play playbook that first injects distribution facts (``library/gpubox_test_facts.py``),
then runs the role with the given variables, tags and ``module_defaults``. It runs ``ansible-playbook --check
--diff`` with the ``ansible.posix.json`` callback, so tests can assert on every task's result: rendered files
arrive as the ``after`` text of their diff, and nothing on this machine changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LIBRARY = os.path.join(os.path.dirname(__file__), "library")

# Facts as ansible.builtin.setup reports them (gather_subset min + virtual), trimmed to what roles read.
OS_FACTS = {
    "debian12": {
        "distribution": "Debian",
        "distribution_release": "bookworm",
        "distribution_version": "12.8",
        "distribution_major_version": "12",
        "os_family": "Debian",
    },
    "debian13": {
        "distribution": "Debian",
        "distribution_release": "trixie",
        "distribution_version": "13.1",
        "distribution_major_version": "13",
        "os_family": "Debian",
    },
    "ubuntu2204": {
        "distribution": "Ubuntu",
        "distribution_release": "jammy",
        "distribution_version": "22.04",
        "distribution_major_version": "22",
        "os_family": "Debian",
    },
    "ubuntu2404": {
        "distribution": "Ubuntu",
        "distribution_release": "noble",
        "distribution_version": "24.04",
        "distribution_major_version": "24",
        "os_family": "Debian",
    },
    "rocky8": {
        "distribution": "Rocky",
        "distribution_release": "Green Obsidian",
        "distribution_version": "8.10",
        "distribution_major_version": "8",
        "os_family": "RedHat",
    },
    "rocky9": {
        "distribution": "Rocky",
        "distribution_release": "Blue Onyx",
        "distribution_version": "9.5",
        "distribution_major_version": "9",
        "os_family": "RedHat",
    },
    "alma9": {
        "distribution": "AlmaLinux",
        "distribution_release": "Teal Serval",
        "distribution_version": "9.5",
        "distribution_major_version": "9",
        "os_family": "RedHat",
    },
    "rhel9": {
        "distribution": "RedHat",
        "distribution_release": "Plow",
        "distribution_version": "9.5",
        "distribution_major_version": "9",
        "os_family": "RedHat",
    },
    "ubuntu2004": {
        "distribution": "Ubuntu",
        "distribution_release": "focal",
        "distribution_version": "20.04",
        "distribution_major_version": "20",
        "os_family": "Debian",
    },
}

COMMON_FACTS = {
    "architecture": "x86_64",
    "machine": "x86_64",
    "system": "Linux",
    "virtualization_type": "",
    "virtualization_role": "",
    "pkg_mgr": "apt",
}


def os_facts(name, **extra):
    """The facts of one OS from OS_FACTS, plus extra keys."""
    facts = dict(COMMON_FACTS, **OS_FACTS[name])
    if facts["os_family"] == "RedHat":
        facts["pkg_mgr"] = "dnf"
    facts.update(extra)
    return facts


class Run:
    """The outcome of one ansible-playbook run."""

    def __init__(self, rc, stdout, stderr, data):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.data = data

    @property
    def output(self):
        return self.stdout + self.stderr

    def tasks(self):
        """(task name, host result) for every task that ran on localhost, in order."""
        out = []
        for play in (self.data or {}).get("plays", []):
            for task in play.get("tasks", []):
                result = task.get("hosts", {}).get("localhost")
                if result is not None:
                    out.append((task["task"]["name"], result))
        return out

    def result(self, name):
        """The result of the last task whose name ends with ``name``."""
        found = [r for n, r in self.tasks() if n.endswith(name)]
        assert found, f"no task named {name!r}; ran: {[task[0] for task in self.tasks()]}"
        return found[-1]

    def failure(self):
        """The message of the first failed task, or None."""
        for _name, result in self.tasks():
            if result.get("failed") and not result.get("_ansible_ignore_errors"):
                return result.get("msg") or result.get("message") or json.dumps(result)
        return None

    def rendered(self, path):
        """The text a template or copy task would write to ``path`` (the ``after`` of its check-mode diff)."""
        for _name, result in self.tasks():
            args = (result.get("invocation") or {}).get("module_args") or {}
            diffs = result.get("diff") or []
            if isinstance(diffs, dict):
                diffs = [diffs]
            for diff in diffs:
                if "after" in diff and path in (args.get("dest"), args.get("path"), diff.get("after_header")):
                    return diff["after"]
        raise AssertionError(f"nothing rendered to {path}; would change {self.changed_paths()}")

    def changed_paths(self):
        """Paths that changed tasks would write (the dest or path argument of their module)."""
        paths = []
        for _name, result in self.tasks():
            args = (result.get("invocation") or {}).get("module_args") or {}
            if result.get("changed"):
                for key in ("dest", "path"):
                    if args.get(key):
                        paths.append(args[key])
        return paths


def run_role(tmp_path, role, *, variables=None, facts=None, tags=None, module_defaults=None, check=True, extra_args=()):
    """Run ``gpubox.llm.<role>`` on localhost with the given facts; return a ``Run``."""
    play = {
        "name": f"{role} under test",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Pretend to be the OS under test",
                "gpubox_test_facts": {"facts": facts or os_facts("debian12")},
                "tags": ["always"],
            },
            {
                "name": "Run the role",
                "ansible.builtin.include_role": {"name": f"gpubox.llm.{role}"},
                "tags": ["always"],
            },
        ],
    }
    if module_defaults:
        play["module_defaults"] = module_defaults
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    varfile = tmp_path / "vars.json"
    all_vars = {"ansible_python_interpreter": sys.executable}
    all_vars.update(variables or {})
    varfile.write_text(json.dumps(all_vars))
    env = dict(
        os.environ,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
        ANSIBLE_LIBRARY=LIBRARY,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_LOCALHOST_WARNING="0",
    )
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local"]
    if check:
        cmd += ["--check", "--diff"]
    if tags:
        cmd += ["--tags", ",".join(tags)]
    cmd += ["-e", f"@{varfile}", *extra_args, str(playbook)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{") :]) if "{" in proc.stdout else None
    except ValueError:
        data = None
    return Run(proc.returncode, proc.stdout, proc.stderr, data)
