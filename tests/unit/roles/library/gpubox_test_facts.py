# Copyright: (c) 2026, gpubox.llm maintainers
# SPDX-License-Identifier: Apache-2.0
"""Test-only module: returns the facts it is given, so a role run on localhost sees another OS."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=module.params["facts"])


if __name__ == "__main__":
    main()
