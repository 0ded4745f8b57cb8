#!/usr/bin/python
# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_info
short_description: Gather facts about NVIDIA GPUs with C(nvidia-smi)
description:
  - Runs C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits) and returns one entry per GPU in
    RV(ansible_facts.gpubox_gpus).
  - Runs C(nvidia-smi topo -m) for the interconnect matrix, per-GPU NUMA affinity and NVLink groups. Topology is
    best effort. If that command fails the module still succeeds, returns a warning and
    RV(ansible_facts.gpubox_gpu_topology.available=false).
  - Runs C(nvidia-smi -q -d COMPUTE) for the CUDA version the driver supports (best effort as well).
  - The per-GPU RV(ansible_facts.gpubox_gpus[].numa_node) comes from the C(NUMA Affinity) column of
    C(nvidia-smi topo -m), falling back to C(/sys/bus/pci/devices/<address>/numa_node) (a value of V(-1) there
    means no NUMA information and is returned as V(null)).
  - When C(nvidia-smi) is not installed the module returns an empty GPU list and
    RV(ansible_facts.gpubox_nvidia_smi_present=false), unless O(required=true).
  - When C(nvidia-smi) is installed but exits non-zero or prints a known error (driver not loaded, driver/library
    version mismatch, no devices found, ...) the module fails and quotes the output.
  - The module only reads; it never changes the host.
version_added: "0.1.0"
options:
  required:
    description:
      - Fail when C(nvidia-smi) cannot be found, with a message explaining how to install the NVIDIA driver.
      - When V(false), a host without C(nvidia-smi) is reported with an empty GPU list.
    type: bool
    default: false
  nvidia_smi_path:
    description:
      - Path to the C(nvidia-smi) executable.
      - By default C(nvidia-smi) is looked up in E(PATH) and the usual system directories.
      - A path that does not exist is treated like a missing C(nvidia-smi).
    type: path
notes:
  - Needs an NVIDIA driver recent enough to know the C(compute_cap) query field; older drivers make the module fail
    with an explanation.
  - C(nvidia-smi) output is not guaranteed to be stable across driver releases; all parsing lives in the
    C(gpubox.llm.nvidia_smi) module utility.
seealso:
  - name: nvidia-smi documentation
    description: NVIDIA System Management Interface manual.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
author:
  - gpubox.llm maintainers (@gpubox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: The module is read-only and runs the same commands in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
---
- name: Gather GPU facts (a host without nvidia-smi gets an empty list)
  gpubox.llm.gpu_info:

- name: Show the GPU models
  ansible.builtin.debug:
    msg: "{{ ansible_facts.gpubox_gpus | map(attribute='name') | list }}"

- name: Insist on a working NVIDIA driver
  gpubox.llm.gpu_info:
    required: true

- name: Use an nvidia-smi outside PATH
  gpubox.llm.gpu_info:
    nvidia_smi_path: /usr/local/nvidia/bin/nvidia-smi

- name: Pick the tensor-parallel size from the largest NVLink group
  ansible.builtin.set_fact:
    tp_size: "{{ ansible_facts.gpubox_gpu_topology.nvlink_groups | map('length') | max }}"
  when: ansible_facts.gpubox_gpu_topology.nvlink_groups | length > 0

- name: Fail when a GPU is not running at its full PCIe link width
  ansible.builtin.assert:
    that: item.pcie_link_width_current == item.pcie_link_width_max
    fail_msg: "GPU {{ item.index }} runs at x{{ item.pcie_link_width_current }} of x{{ item.pcie_link_width_max }}"
  loop: "{{ ansible_facts.gpubox_gpus }}"
  loop_control:
    label: "{{ item.index }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts about the NVIDIA GPUs of the host.
  returned: always
  type: dict
  contains:
    gpubox_nvidia_smi_present:
      description: Whether C(nvidia-smi) was found.
      returned: always
      type: bool
      sample: true
    gpubox_nvidia_driver_version:
      description: The NVIDIA driver version, V(null) without C(nvidia-smi).
      returned: always
      type: str
      sample: "570.172.08"
    gpubox_cuda_version:
      description:
        - The highest CUDA version the driver supports, as C(nvidia-smi -q) reports it.
        - V(null) without C(nvidia-smi) or when C(nvidia-smi) does not report it (for example V(Not Found)).
      returned: always
      type: str
      sample: "12.8"
    gpubox_gpus:
      description: One entry per GPU, ordered by index. Values that C(nvidia-smi) reports as not available are V(null).
      returned: always
      type: list
      elements: dict
      contains:
        index:
          description: The nvidia-smi GPU index (can change across reboots).
          type: int
          returned: always
          sample: 0
        uuid:
          description: The GPU UUID.
          type: str
          returned: always
          sample: GPU-3b8f1c4e-7d2a-4f61-9c0e-5a7d2e91b4c3
        name:
          description: The product name.
          type: str
          returned: always
          sample: NVIDIA L40S
        pci_bus_id:
          description: PCI address as nvidia-smi prints it (8 hex digit domain, upper case).
          type: str
          returned: always
          sample: "00000000:01:00.0"
        memory_total_mib:
          description: Total GPU memory in MiB.
          type: int
          returned: always
          sample: 46068
        memory_used_mib:
          description: GPU memory in use, in MiB.
          type: int
          returned: always
          sample: 41520
        compute_capability:
          description: CUDA compute capability as C(MAJOR.MINOR).
          type: str
          returned: always
          sample: "8.9"
        pcie_link_gen_current:
          description: Current PCIe link generation (may drop while the GPU idles).
          type: int
          returned: always
          sample: 4
        pcie_link_gen_max:
          description: Highest PCIe link generation possible with this GPU and system.
          type: int
          returned: always
          sample: 4
        pcie_link_width_current:
          description: Current PCIe link width (lanes).
          type: int
          returned: always
          sample: 16
        pcie_link_width_max:
          description: Widest PCIe link possible with this GPU and slot (lanes).
          type: int
          returned: always
          sample: 16
        persistence_mode:
          description: Whether persistence mode is enabled.
          type: bool
          returned: always
          sample: true
        mig_mode:
          description: Current MIG mode, V(Enabled) or V(Disabled); V(null) on GPUs without MIG.
          type: str
          returned: always
          sample: Disabled
        numa_node:
          description: NUMA node closest to the GPU; V(null) when unknown.
          type: int
          returned: always
          sample: 0
      sample:
        - index: 0
          uuid: GPU-3b8f1c4e-7d2a-4f61-9c0e-5a7d2e91b4c3
          name: NVIDIA L40S
          pci_bus_id: "00000000:01:00.0"
          memory_total_mib: 46068
          memory_used_mib: 41520
          compute_capability: "8.9"
          pcie_link_gen_current: 4
          pcie_link_gen_max: 4
          pcie_link_width_current: 16
          pcie_link_width_max: 16
          persistence_mode: true
          mig_mode: null
          numa_node: 0
    gpubox_gpu_topology:
      description:
        - The C(nvidia-smi topo -m) topology. Empty (with RV(ansible_facts.gpubox_gpu_topology.available=false)) when
          C(nvidia-smi) is missing or C(nvidia-smi topo -m) failed.
      returned: always
      type: dict
      contains:
        available:
          description: Whether the topology could be read.
          type: bool
          returned: always
          sample: true
        devices:
          description: Column labels of the matrix, GPUs first, then NICs.
          type: list
          elements: str
          returned: always
          sample: [GPU0, GPU1, NIC0]
        matrix:
          description:
            - Connection type between each pair of devices, as printed, keyed by row then column label.
            - V(X) is the device itself, V(NV<n>) a bonded set of n NVLinks, V(PIX), V(PXB), V(PHB), V(NODE), V(SYS)
              increasingly distant PCIe paths.
          type: dict
          returned: always
          sample:
            GPU0: {GPU0: X, GPU1: NV4, NIC0: NODE}
            GPU1: {GPU0: NV4, GPU1: X, NIC0: NODE}
            NIC0: {GPU0: NODE, GPU1: NODE, NIC0: X}
        gpus:
          description: Affinity columns per GPU.
          type: list
          elements: dict
          returned: always
          contains:
            index:
              description: GPU index.
              type: int
              returned: always
              sample: 0
            cpu_affinity:
              description: CPUs close to the GPU, in C(taskset) list syntax.
              type: str
              returned: always
              sample: "0-23,48-71"
            numa_affinity:
              description: NUMA node close to the GPU, V(null) for C(N/A).
              type: int
              returned: always
              sample: 0
            gpu_numa_id:
              description: NUMA node of the GPU memory itself (coherent systems such as Grace Hopper), else V(null).
              type: int
              returned: always
              sample: null
        nics:
          description: NIC labels of the matrix mapped to device names, from the NIC legend.
          type: dict
          returned: always
          sample: {NIC0: mlx5_0, NIC1: mlx5_1}
        nvlink_groups:
          description:
            - GPU indices grouped by NVLink connectivity (connected components of C(NV<n>) links).
            - Every GPU appears in exactly one group; a GPU without NVLink forms a group of its own.
            - Empty when the topology is not available.
          type: list
          elements: list
          returned: always
          sample: [[0, 1], [2], [3]]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_smi import (
    QUERY_GPU_FIELDS,
    QUERY_GPU_FORMAT,
    NvidiaSmiError,
    check_result,
    parse_query_gpu,
    parse_topology,
    parse_versions,
    sysfs_pci_address,
)

SYSFS_PCI_DEVICES = "/sys/bus/pci/devices"

INSTALL_HINT = (
    "nvidia-smi was not found, so the NVIDIA driver is not installed (or not in PATH). "
    "Install it with the gpubox.llm.nvidia_driver role, or from your distribution's packages "
    "(Debian: nvidia-driver from non-free; Ubuntu: 'ubuntu-drivers install' or nvidia-driver-<version>-server; "
    "RHEL/Rocky: the CUDA repository's nvidia-driver module), then reboot. "
    "Set nvidia_smi_path if nvidia-smi lives outside PATH."
)


def empty_topology():
    return {"available": False, "devices": [], "matrix": {}, "gpus": [], "nics": {}, "nvlink_groups": []}


def read_sysfs_numa_node(pci_bus_id):
    """NUMA node from sysfs, None when unknown (-1, missing file, bad bus id)."""
    if not pci_bus_id:
        return None
    try:
        path = os.path.join(SYSFS_PCI_DEVICES, sysfs_pci_address(pci_bus_id), "numa_node")
        with open(path) as handle:
            value = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return value if value >= 0 else None


def failure_message(error):
    """The error text, plus what to do about it for known nvidia-smi errors."""
    hint = getattr(error, "hint", None)
    return f"{error} {hint}" if hint else str(error)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            required=dict(type="bool", default=False),
            nvidia_smi_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    facts = {
        "gpubox_nvidia_smi_present": False,
        "gpubox_nvidia_driver_version": None,
        "gpubox_cuda_version": None,
        "gpubox_gpus": [],
        "gpubox_gpu_topology": empty_topology(),
    }

    smi = module.params["nvidia_smi_path"]
    if smi and not os.path.exists(smi):
        module.warn(f"nvidia_smi_path {smi} does not exist")
        smi = None
    elif not smi:
        smi = module.get_bin_path("nvidia-smi")
    if not smi:
        if module.params["required"]:
            module.fail_json(msg=INSTALL_HINT)
        module.exit_json(changed=False, ansible_facts=facts)
    facts["gpubox_nvidia_smi_present"] = True

    # The GPU query must work.
    args = [smi, "--query-gpu=" + ",".join(QUERY_GPU_FIELDS), "--format=" + QUERY_GPU_FORMAT]
    rc, out, err = module.run_command(args)
    gpus = []
    try:
        gpus = parse_query_gpu(check_result(rc, out, err, command="nvidia-smi --query-gpu"))
    except NvidiaSmiError as exc:
        module.fail_json(msg=failure_message(exc), rc=getattr(exc, "rc", None) or rc, stdout=out, stderr=err)
    gpus.sort(key=lambda g: g["index"])

    # Topology and CUDA version are best effort.
    topology = empty_topology()
    rc, out, err = module.run_command([smi, "topo", "-m"])
    try:
        topology = parse_topology(check_result(rc, out, err, command="nvidia-smi topo -m"))
        topology["available"] = True
    except NvidiaSmiError as exc:
        module.warn(
            "GPU topology is best effort and could not be read, so NVLink groups are empty and NUMA nodes "
            f"come from sysfs: {exc}"
        )

    versions = {"driver_version": None, "cuda_version": None}
    rc, out, err = module.run_command([smi, "-q", "-d", "COMPUTE"])
    try:
        versions = parse_versions(check_result(rc, out, err, command="nvidia-smi -q"))
    except NvidiaSmiError as exc:
        module.warn(f"Could not read the CUDA version: {exc}")

    numa = {g["index"]: g["numa_affinity"] for g in topology["gpus"]}
    for gpu in gpus:
        driver = gpu.pop("driver_version")
        facts["gpubox_nvidia_driver_version"] = facts["gpubox_nvidia_driver_version"] or driver
        node = numa.get(gpu["index"])
        gpu["numa_node"] = node if node is not None else read_sysfs_numa_node(gpu["pci_bus_id"])

    facts["gpubox_nvidia_driver_version"] = facts["gpubox_nvidia_driver_version"] or versions["driver_version"]
    facts["gpubox_cuda_version"] = versions["cuda_version"]
    facts["gpubox_gpus"] = gpus
    facts["gpubox_gpu_topology"] = topology
    module.exit_json(changed=False, ansible_facts=facts)


if __name__ == "__main__":
    main()
