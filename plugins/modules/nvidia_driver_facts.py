#!/usr/bin/python
# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_driver_facts
short_description: Detect NVIDIA GPUs, NVSwitches, Secure Boot and the NVIDIA driver state without a driver
description:
  - Reads PCI sysfs for NVIDIA devices (vendor V(0x10de)). GPUs are display class V(0x0300) (VGA) or V(0x0302)
    (3D controller); NVSwitches are class V(0x0680). No driver is needed, so this works before the NVIDIA driver is
    installed, with nouveau, and with the GPUs bound to vfio-pci.
  - Places every GPU in its architecture from its PCI device ID (with the GPU name from C(pci.ids) as a fallback for
    IDs the table does not know) and reports whether the open kernel modules are required, recommended or
    unsupported for it, and the oldest and newest driver branch that support it.
  - Reports the Secure Boot state (efivars, else C(mokutil --sb-state)), the loaded C(nvidia) kernel module (version,
    open or proprietary), the installed userspace version (C(libnvidia-ml.so.<version>)) and the drift between the
    two, whether nouveau is loaded, whether this is a container, the kernel release and whether its headers are
    installed.
  - With O(kernel_module) and O(branch), checks the requested kernel module flavour and driver branch against the
    GPUs. An impossible combination does not fail the module; it is returned in RV(kernel_module_problems) and
    RV(branch_problems), so that a role can fail with an explanation before changing anything.
  - The module only reads; it never changes the host.
version_added: "0.1.0"
options:
  kernel_module:
    description:
      - The kernel module flavour asked for.
      - V(auto) picks V(open) when a GPU requires it (Blackwell, Grace Hopper) or every GPU is recommended to use it
        (Turing and newer; also a host without GPUs), and V(proprietary) when a GPU cannot run the open modules
        (Maxwell, Pascal, Volta).
      - The choice is returned in RV(kernel_module); a request the GPUs cannot run is explained in
        RV(kernel_module_problems).
    type: str
    choices: [auto, open, proprietary]
    default: auto
  branch:
    description:
      - A driver branch (the major version, for example V(570)) to check against the GPUs; problems are returned in
        RV(branch_problems).
      - Blackwell needs 570 or newer, Hopper and Ada 525 or newer (H200 550); Maxwell, Pascal and Volta are supported
        up to 580.
    type: int
  sysfs_path:
    description:
      - Where sysfs is mounted. Other values are for tests and chroots.
    type: path
    default: /sys
  procfs_path:
    description:
      - Where procfs is mounted. Other values are for tests and chroots.
    type: path
    default: /proc
  root_path:
    description:
      - Root of the filesystem to inspect for C(/lib/modules), the library directories, C(pci.ids) and the container
        marker files. Other values are for tests and chroots.
    type: path
    default: /
  mokutil_path:
    description:
      - Path to C(mokutil), used only when the SecureBoot EFI variable cannot be read from efivarfs.
      - By default C(mokutil) is looked up in E(PATH) and the usual system directories; without it the Secure Boot
        state may be reported as unknown.
    type: path
  pci_ids_path:
    description:
      - A C(pci.ids) file to name the GPUs from.
      - By default C(usr/share/misc/pci.ids) or C(usr/share/hwdata/pci.ids) under O(root_path); without one the GPU
        names are V(null).
    type: path
notes:
  - The PCI device ID table covers Maxwell to Blackwell (PCI ID database and the NVIDIA driver README,
    "Supported NVIDIA GPU Products"). IDs above the table are reported as architecture V(unknown-newer) and treated
    like Blackwell (open kernel modules required); unplaced IDs below it as V(unknown).
  - Reading efivars and C(/proc/1/environ) can need root; what cannot be read is reported as unknown.
seealso:
  - module: gpubox.llm.gpu_info
  - name: NVIDIA driver installation guide, kernel modules
    description: Open and proprietary kernel module flavours and the GPUs each supports.
    link: https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/kernel-modules.html
author:
  - gpubox.llm maintainers (@gpubox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: The module is read-only and reads the same in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
---
- name: Detect the GPUs and the driver state
  gpubox.llm.nvidia_driver_facts:

- name: Show the GPUs and what they need
  ansible.builtin.debug:
    msg: >-
      {{ item.address }} {{ item.name }}: {{ item.architecture }}, open kernel modules {{ item.open_module }}
  loop: "{{ ansible_facts.gpubox_nvidia_pci.gpus }}"
  loop_control:
    label: "{{ item.address }}"

- name: Check a flavour and a branch before installing anything
  gpubox.llm.nvidia_driver_facts:
    kernel_module: auto
    branch: 570
  register: detect

- name: Fail with the explanation when the GPUs cannot run it
  ansible.builtin.assert:
    that:
      - detect.kernel_module_problems | length == 0
      - detect.branch_problems | length == 0
    fail_msg: "{{ (detect.kernel_module_problems + detect.branch_problems) | join(' ') }}"

- name: Reboot when the loaded module and the installed userspace differ
  ansible.builtin.reboot:
  when: ansible_facts.gpubox_nvidia_kernel.drift_state == 'mismatch'

- name: Warn about GPUs on a degraded PCIe link
  ansible.builtin.debug:
    msg: "{{ item.address }} runs at x{{ item.pcie.current_width }} of x{{ item.pcie.max_width }}"
  loop: "{{ ansible_facts.gpubox_nvidia_pci.gpus | selectattr('pcie.degraded') | list }}"
  loop_control:
    label: "{{ item.address }}"
"""

RETURN = r"""
kernel_module:
  description:
    - The kernel module flavour to use for O(kernel_module) on these GPUs, V(open) or V(proprietary).
    - V(null) when the request cannot work (see RV(kernel_module_problems)).
  returned: always
  type: str
  sample: open
kernel_module_problems:
  description:
    - Why O(kernel_module) cannot drive every GPU of the host, one sentence per problem naming the GPUs (PCI address,
      chip, architecture, name); empty when it can.
    - Open on Maxwell/Pascal/Volta, proprietary on Blackwell/Grace Hopper, and a host mixing both.
  returned: always
  type: list
  elements: str
  sample: []
branch_problems:
  description:
    - Why driver branch O(branch) does not support every GPU, one sentence per problem naming the GPUs; empty when it
      does, and when O(branch) is not given.
  returned: always
  type: list
  elements: str
  sample:
    - >-
      Driver branch 535 is too old for 0000:01:00.0 (GB202, Blackwell, GB202 [GeForce RTX 5090]), which needs
      branch 570 or newer.
ansible_facts:
  description: Facts about the NVIDIA hardware and driver of the host.
  returned: always
  type: dict
  contains:
    gpubox_nvidia_pci:
      description: NVIDIA GPUs and NVSwitches found on the PCI bus.
      returned: always
      type: dict
      contains:
        gpus:
          description: One entry per GPU, ordered by PCI address.
          returned: always
          type: list
          elements: dict
          contains:
            address:
              description: PCI address as sysfs names it.
              returned: always
              type: str
              sample: "0000:18:00.0"
            vendor_id:
              description: PCI vendor ID.
              returned: always
              type: str
              sample: "0x10de"
            device_id:
              description: PCI device ID, 4 hex digits.
              returned: always
              type: str
              sample: "0x2330"
            subsystem_vendor_id:
              description: PCI subsystem vendor ID (the board maker); V(null) when sysfs does not say.
              returned: always
              type: str
              sample: "0x10de"
            subsystem_device_id:
              description: PCI subsystem device ID; V(null) when sysfs does not say.
              returned: always
              type: str
              sample: "0x16c1"
            class:
              description: PCI class code, 6 hex digits (V(0x0300xx) VGA, V(0x0302xx) 3D controller).
              returned: always
              type: str
              sample: "0x030200"
            name:
              description: The device name from C(pci.ids); V(null) without C(pci.ids) or when it does not list the ID.
              returned: always
              type: str
              sample: GH100 [H100 SXM5 80GB]
            architecture:
              description:
                - V(maxwell), V(pascal), V(volta), V(turing), V(ampere), V(ada), V(hopper) or V(blackwell).
                - V(unknown-newer) for an ID above the table (treated like Blackwell), V(unknown) for an ID below it
                  that neither the table nor the name places.
              returned: always
              type: str
              sample: hopper
            chip:
              description: The chip (V(GH100), V(AD102), ...); V(null) when not known.
              returned: always
              type: str
              sample: GH100
            open_module:
              description:
                - V(required) (Blackwell, Grace Hopper, unknown-newer), V(recommended) (Turing to Hopper) or
                  V(unsupported) (Maxwell, Pascal, Volta, unknown).
              returned: always
              type: str
              sample: recommended
            min_branch:
              description: The oldest driver branch that supports the GPU; V(null) for no limit.
              returned: always
              type: int
              sample: 525
            max_branch:
              description:
                - The newest driver branch that supports the GPU (V(580) for Maxwell, Pascal, Volta); V(null) for no
                  limit.
              returned: always
              type: int
              sample: null
            numa_node:
              description: NUMA node of the GPU's PCI slot; V(null) when unknown.
              returned: always
              type: int
              sample: 0
            driver:
              description: The kernel driver bound to the GPU (V(nvidia), V(nouveau), V(vfio-pci)); V(null) when none.
              returned: always
              type: str
              sample: nvidia
            pcie:
              description: The PCIe link of the GPU.
              returned: always
              type: dict
              contains:
                current_gen:
                  description: Current link generation; NVIDIA GPUs lower it while idle. V(null) when unknown.
                  returned: always
                  type: int
                  sample: 5
                max_gen:
                  description: Highest link generation of the GPU; V(null) when unknown.
                  returned: always
                  type: int
                  sample: 5
                current_width:
                  description: Current link width (lanes); V(null) when unknown.
                  returned: always
                  type: int
                  sample: 16
                max_width:
                  description: Widest link of the GPU (lanes); V(null) when unknown.
                  returned: always
                  type: int
                  sample: 16
                degraded:
                  description:
                    - Whether the link runs with fewer lanes than the GPU has (narrow slot, bad riser, link retrained
                      down). The generation is not counted, because idle GPUs lower it.
                  returned: always
                  type: bool
                  sample: false
        nvswitches:
          description: One entry per NVSwitch (NVIDIA device of class V(0x0680)), ordered by PCI address.
          returned: always
          type: list
          elements: dict
          contains:
            address:
              description: PCI address.
              returned: always
              type: str
              sample: "0000:05:00.0"
            device_id:
              description: PCI device ID.
              returned: always
              type: str
              sample: "0x22a3"
            generation:
              description: The NVSwitch generation for known device IDs, else V(null).
              returned: always
              type: str
              sample: NVSwitch gen3 (HGX H100/H200)
            driver:
              description: The kernel driver bound to it (V(nvidia-nvswitch)); V(null) when none.
              returned: always
              type: str
              sample: null
        gpu_count:
          description: Number of GPUs.
          returned: always
          type: int
          sample: 8
        nvswitch_count:
          description: Number of NVSwitches; more than zero means the fabric manager is needed.
          returned: always
          type: int
          sample: 4
    gpubox_secure_boot:
      description: UEFI Secure Boot state.
      returned: always
      type: dict
      contains:
        enabled:
          description: Whether Secure Boot is on; V(null) when it could not be read.
          returned: always
          type: bool
          sample: true
        setup_mode:
          description: Whether the firmware is in Setup Mode (keys can be enrolled without the console).
          returned: always
          type: bool
          sample: false
        source:
          description: V(bios) (legacy boot), V(efivars), V(mokutil) or V(unknown).
          returned: always
          type: str
          sample: efivars
        detail:
          description: What the source said, in words.
          returned: always
          type: str
          sample: SecureBoot enabled
    gpubox_nvidia_kernel:
      description: The NVIDIA driver as loaded and as installed, and what building its modules needs.
      returned: always
      type: dict
      contains:
        loaded:
          description: Whether the C(nvidia) kernel module is loaded.
          returned: always
          type: bool
          sample: true
        loaded_version:
          description: Version of the loaded module; V(null) when not loaded.
          returned: always
          type: str
          sample: "570.124.06"
        loaded_flavour:
          description:
            - V(open) or V(proprietary) for the loaded module, from C(/proc/driver/nvidia/version); V(null) when
              unknown.
          returned: always
          type: str
          sample: open
        installed_version:
          description: Highest installed userspace version (C(libnvidia-ml.so.<version>)); V(null) when none.
          returned: always
          type: str
          sample: "570.124.06"
        installed_versions:
          description: Every installed userspace version, oldest first; more than one means leftovers.
          returned: always
          type: list
          elements: str
          sample: ["570.124.06"]
        drift:
          description:
            - Whether the loaded module and the installed userspace disagree (mismatch, not loaded, not installed).
          returned: always
          type: bool
          sample: false
        drift_state:
          description:
            - V(in_sync), V(mismatch) (different versions; GPU programs fail with "Driver/library version mismatch"
              until a reboot or module reload), V(not_loaded) (installed, module not loaded), V(not_installed)
              (module loaded, no userspace) or V(absent) (neither).
          returned: always
          type: str
          sample: in_sync
        drift_message:
          description: The drift state explained, with what to do about it.
          returned: always
          type: str
          sample: The loaded kernel module and the installed userspace are both 570.124.06.
        nouveau_loaded:
          description: Whether the nouveau module is loaded (it must not be for the NVIDIA driver to load).
          returned: always
          type: bool
          sample: false
        kernel_release:
          description: The running kernel release; V(null) when unreadable.
          returned: always
          type: str
          sample: 6.1.0-28-amd64
        headers_installed:
          description: Whether C(/lib/modules/<release>/build) is there, so DKMS can build modules for it.
          returned: always
          type: bool
          sample: true
        container:
          description: Whether this runs in a container (then kernel modules belong to the host).
          returned: always
          type: bool
          sample: false
        container_type:
          description: V(docker), V(podman), V(lxc), V(kubernetes), V(systemd-nspawn), ...; V(null) outside a container.
          returned: always
          type: str
          sample: null
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_driver import (
    container_state,
    drift,
    headers_installed,
    installed_userspace,
    kernel_release,
    loaded_module,
    nouveau_loaded,
    secure_boot_state,
)
from ansible_collections.gpubox.llm.plugins.module_utils.nvidia_pci import (
    KERNEL_MODULE_CHOICES,
    check_branch,
    find_pci_ids,
    kernel_module_problems,
    load_pci_names,
    scan_pci,
)


def mokutil_runner(module):
    """A function running ``mokutil --sb-state``: returns what it printed, or None without mokutil.

    The lookup happens on the first call, so mokutil is only looked for when efivars cannot answer.
    """

    def run():
        path = module.params["mokutil_path"]
        if path and not os.path.exists(path):
            module.warn(f"mokutil_path {path} does not exist")
            return None
        path = path or module.get_bin_path("mokutil")
        if not path:
            return None
        _rc, out, err = module.run_command([path, "--sb-state"])
        text = "\n".join(part for part in (out, err) if part)
        return text or None

    return run


def kernel_facts(module):
    params = module.params
    loaded = loaded_module(params["sysfs_path"], params["procfs_path"])
    userspace = installed_userspace(params["root_path"])
    state = drift(loaded["version"], userspace["version"], userspace["versions"])
    if len(userspace["versions"]) > 1:
        module.warn("Several NVIDIA userspace versions are installed: " + ", ".join(userspace["versions"]))
    release = kernel_release(params["procfs_path"])
    container = container_state(params["root_path"], params["procfs_path"])
    return {
        "loaded": loaded["loaded"],
        "loaded_version": loaded["version"],
        "loaded_flavour": loaded["flavour"],
        "installed_version": userspace["version"],
        "installed_versions": userspace["versions"],
        "drift": state["drift"],
        "drift_state": state["state"],
        "drift_message": state["message"],
        "nouveau_loaded": nouveau_loaded(params["sysfs_path"]),
        "kernel_release": release,
        "headers_installed": headers_installed(
            release, os.path.join(params["root_path"], "lib", "modules"), params["root_path"]
        ),
        "container": container["container"],
        "container_type": container["type"],
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kernel_module=dict(type="str", default="auto", choices=list(KERNEL_MODULE_CHOICES)),
            branch=dict(type="int"),
            sysfs_path=dict(type="path", default="/sys"),
            procfs_path=dict(type="path", default="/proc"),
            root_path=dict(type="path", default="/"),
            mokutil_path=dict(type="path"),
            pci_ids_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params

    pci_ids = params["pci_ids_path"] or find_pci_ids(params["root_path"])
    names = load_pci_names(pci_ids) if pci_ids else {}
    pci = scan_pci(params["sysfs_path"], names)

    secure_boot = secure_boot_state(params["sysfs_path"], mokutil_runner(module))

    choice, module_problems = kernel_module_problems(pci["gpus"], params["kernel_module"])
    branch_problems = check_branch(pci["gpus"], params["branch"])

    module.exit_json(
        changed=False,
        kernel_module=choice,
        kernel_module_problems=module_problems,
        branch_problems=branch_problems,
        ansible_facts={
            "gpubox_nvidia_pci": pci,
            "gpubox_secure_boot": secure_boot,
            "gpubox_nvidia_kernel": kernel_facts(module),
        },
    )


if __name__ == "__main__":
    main()
