# Copyright: (c) 2025, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Parsing of ``nvidia-smi`` output.

This is the single place in the collection that knows nvidia-smi's text formats.
Everything here is pure: callers run the commands and hand over rc/stdout/stderr.

Formats handled:

* ``nvidia-smi --query-gpu=<QUERY_GPU_FIELDS> --format=csv,noheader,nounits``
  (one line per GPU, values separated by ``", "``; unavailable values print as
  ``[N/A]``, ``[Not Supported]`` or ``N/A``).
* ``nvidia-smi topo -m`` (tab separated matrix, optional ANSI underline on the
  header, ``CPU Affinity``/``NUMA Affinity``/``GPU NUMA ID`` columns, ``Legend:``
  and ``NIC Legend:`` footers). Space separated copies are accepted too.
* ``nvidia-smi -q`` (or ``-q -d <section>``) header and the default ``nvidia-smi``
  banner, for the driver and CUDA versions.
* ``nvidia-smi --query-compute-apps=<QUERY_COMPUTE_APPS_FIELDS> --format=csv,noheader,nounits``
  (one line per process and GPU; ``used_memory`` in MiB, ``[N/A]`` where the driver cannot
  attribute memory to a process, e.g. under Windows WDDM or for MIG instances without privileges;
  no output at all, or ``No running processes found``, when no process has a compute context).
"""

from __future__ import annotations

import csv
import re

# Order matters: the CSV columns come back in this order.
QUERY_GPU_FIELDS = (
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "memory.used",
    "compute_cap",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
    "persistence_mode",
    "mig.mode.current",
)

QUERY_GPU_FORMAT = "csv,noheader,nounits"

# ``nvidia-smi --help-query-compute-apps``: "pid", "gpu_uuid", "used_gpu_memory" or "used_memory"
# (MiB with nounits), "process_name" or "name". process_name comes last: it is the only free-text
# value and may contain commas.
QUERY_COMPUTE_APPS_FIELDS = ("pid", "gpu_uuid", "used_memory", "process_name")

# Values nvidia-smi prints when a field has no value on this GPU/driver.
NOT_AVAILABLE = frozenset(
    (
        "",
        "N/A",
        "[N/A]",
        "Not Supported",
        "[Not Supported]",
        "Not Found",
        "[Not Found]",
        "Unknown Error",
        "[Unknown Error]",
        "Requested functionality has been deprecated",
        "[Requested functionality has been deprecated]",
    )
)

TOPO_AFFINITY_COLUMNS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BUS_ID_RE = re.compile(r"^([0-9A-Fa-f]{1,8}):([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-7])$")
_CC_RE = re.compile(r"^\d+\.\d+$")
_VERSION_RE = re.compile(r"^\d+(\.\d+)+$")
_NVLINK_RE = re.compile(r"^NV(\d+)$")
_GPU_LABEL_RE = re.compile(r"^GPU(\d+)$")
_NIC_LEGEND_RE = re.compile(r"^\s*(NIC\d+)\s*:\s*(\S+)\s*$")

# (kind, regex, hint). First match wins.
_KNOWN_ERRORS = (
    (
        "driver_not_loaded",
        re.compile(r"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver[^\n]*", re.I),
        "The NVIDIA kernel module is not loaded: install or rebuild the driver (DKMS) for the running kernel, "
        "or reboot after an install.",
    ),
    (
        "driver_library_mismatch",
        re.compile(r"Failed to initialize NVML: Driver/library version mismatch", re.I),
        "The loaded kernel module and the user-space NVIDIA libraries differ (usually after a driver upgrade "
        "without a reboot): reboot, or unload and reload the nvidia kernel modules.",
    ),
    (
        "library_not_found",
        re.compile(r"couldn't find libnvidia-ml\.so[^\n]*", re.I),
        "libnvidia-ml.so is missing: the NVIDIA user-space driver libraries are not installed.",
    ),
    (
        "no_devices",
        re.compile(r"^No devices were found\s*$", re.I | re.M),
        "The driver is loaded but sees no NVIDIA GPU (check lspci, BIOS, or device passthrough).",
    ),
    (
        "gpu_lost",
        re.compile(r"Unable to determine the device handle for (?:GPU|gpu)\s*[0-9A-Fa-f:.]+: [^\n]*", re.I),
        "A GPU is not accessible (fallen off the bus or needs a reset); see dmesg for Xid errors.",
    ),
    (
        "invalid_field",
        re.compile(r'Field "[^"]+" is not a valid field to query\.?', re.I),
        "This nvidia-smi is too old for the fields queried; upgrade the NVIDIA driver.",
    ),
    (
        "nvml_init_failed",
        re.compile(r"Failed to initialize NVML: [^\n]+", re.I),
        "NVML could not be initialised (permissions, container device access or driver state).",
    ),
)


class NvidiaSmiError(Exception):
    """Base class; ``output`` holds the nvidia-smi text concerned."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class NvidiaSmiCommandError(NvidiaSmiError):
    """nvidia-smi exited non-zero or printed a known error.

    ``kind`` is one of the known error kinds (``driver_not_loaded``,
    ``driver_library_mismatch``, ``library_not_found``, ``no_devices``,
    ``gpu_lost``, ``invalid_field``, ``nvml_init_failed``) or ``unknown``.
    """

    def __init__(self, message, output="", rc=None, kind="unknown", hint=None):
        super().__init__(message, output)
        self.rc = rc
        self.kind = kind
        self.hint = hint


class NvidiaSmiParseError(NvidiaSmiError):
    """The output does not have the expected shape; ``line_number`` is 1-based."""

    def __init__(self, message, output="", line_number=None, line=None):
        super().__init__(message, output)
        self.line_number = line_number
        self.line = line


def _quote(text):
    text = text.strip()
    if not text:
        return "(no output)"
    return '"' + text.replace("\n", " / ") + '"'


def detect_error(output, rc=None):
    """Raise NvidiaSmiCommandError if ``output`` contains a known nvidia-smi error."""
    for kind, regex, hint in _KNOWN_ERRORS:
        if regex.search(output or ""):
            where = "" if rc is None else f" (rc={rc})"
            msg = f"nvidia-smi reported an error{where}: {_quote(output)}"
            raise NvidiaSmiCommandError(msg, output=output, rc=rc, kind=kind, hint=hint)


def check_result(rc, stdout, stderr="", command="nvidia-smi"):
    """Validate a finished nvidia-smi run and return its stdout.

    Raises NvidiaSmiCommandError when ``rc`` is non-zero or the output holds a known
    error message (nvidia-smi prints most of them on stdout). The message quotes
    the output.
    """
    stdout = stdout or ""
    stderr = stderr or ""
    combined = "\n".join(part for part in (stdout.strip(), stderr.strip()) if part)
    detect_error(combined, rc=rc or None)
    if rc:
        raise NvidiaSmiCommandError(f"{command} exited with rc={rc}: {_quote(combined)}", output=combined, rc=rc)
    return stdout


def na_to_none(value):
    """Strip ``value``; return None for nvidia-smi's "not available" markers."""
    if value is None:
        return None
    value = value.strip()
    return None if value in NOT_AVAILABLE else value


def _bus_id_parts(bus_id):
    match = _BUS_ID_RE.match(bus_id.strip())
    if not match:
        raise ValueError(f"not a PCI bus id: {bus_id!r}")
    domain, bus, dev, fn = match.groups()
    return int(domain, 16), int(bus, 16), int(dev, 16), fn


def normalize_pci_bus_id(bus_id):
    """Return ``bus_id`` as nvidia-smi prints it: ``DDDDDDDD:BB:DD.F``, upper-case hex."""
    domain, bus, dev, fn = _bus_id_parts(bus_id)
    return f"{domain:08X}:{bus:02X}:{dev:02X}.{fn}"


def sysfs_pci_address(bus_id):
    """Return the sysfs name (``/sys/bus/pci/devices/<name>``) for an nvidia-smi bus id."""
    domain, bus, dev, fn = _bus_id_parts(bus_id)
    return f"{domain:04x}:{bus:02x}:{dev:02x}.{fn}"


class _Line:
    """One line of --query-gpu (or --query-compute-apps) output, for error messages."""

    def __init__(self, number, text, output, query="--query-gpu"):
        self.number = number
        self.text = text
        self.output = output
        self.query = query

    def error(self, problem):
        return NvidiaSmiParseError(
            f"malformed nvidia-smi {self.query} output, line {self.number}: {problem}: {self.text!r}",
            output=self.output,
            line_number=self.number,
            line=self.text,
        )


def _to_int(value, field, line, unit=None):
    value = na_to_none(value)
    if value is None:
        return None
    if unit and value.endswith(unit):
        value = value[: -len(unit)].strip()
    if not re.match(r"^-?\d+$", value):
        raise line.error(f"field {field}: expected an integer, got {value!r}")
    return int(value)


def _to_mode(value, field, line):
    value = na_to_none(value)
    if value is None or value in ("Enabled", "Disabled"):
        return value
    raise line.error(f"field {field}: expected Enabled/Disabled, got {value!r}")


def _to_bool(value, field, line):
    value = _to_mode(value, field, line)
    return None if value is None else value == "Enabled"


def parse_query_gpu(output, fields=QUERY_GPU_FIELDS):
    """Parse ``--query-gpu=<fields> --format=csv,noheader,nounits`` output.

    Returns one dict per GPU with keys index, uuid, name, pci_bus_id, driver_version,
    memory_total_mib, memory_used_mib, compute_capability, pcie_link_gen_current,
    pcie_link_gen_max, pcie_link_width_current, pcie_link_width_max,
    persistence_mode, mig_mode (``fields`` must be QUERY_GPU_FIELDS for that).
    Raises NvidiaSmiCommandError for known error text, NvidiaSmiParseError for
    anything else that does not fit.
    """
    detect_error(output)
    fields = tuple(fields)
    gpus = []
    for number, text in enumerate(output.splitlines(), 1):
        if not text.strip():
            continue
        line = _Line(number, text, output)
        values = next(csv.reader([text], skipinitialspace=True))
        if len(values) != len(fields):
            raise line.error(f"expected {len(fields)} fields, got {len(values)}")
        raw = dict(zip(fields, (v.strip() for v in values), strict=True))
        gpus.append(_convert_gpu(raw, line))
    return gpus


def _convert_gpu(raw, line):
    index = _to_int(raw["index"], "index", line)
    if index is None:
        raise line.error("field index: missing")
    bus_id = na_to_none(raw["pci.bus_id"])
    if bus_id is not None:
        try:
            bus_id = normalize_pci_bus_id(bus_id)
        except ValueError:
            raise line.error(f"field pci.bus_id: not a PCI bus id {bus_id!r}") from None
    cc = na_to_none(raw["compute_cap"])
    if cc is not None and not _CC_RE.match(cc):
        raise line.error(f"field compute_cap: expected MAJOR.MINOR, got {cc!r}")
    return {
        "index": index,
        "uuid": na_to_none(raw["uuid"]),
        "name": na_to_none(raw["name"]),
        "pci_bus_id": bus_id,
        "driver_version": na_to_none(raw["driver_version"]),
        "memory_total_mib": _to_int(raw["memory.total"], "memory.total", line, "MiB"),
        "memory_used_mib": _to_int(raw["memory.used"], "memory.used", line, "MiB"),
        "compute_capability": cc,
        "pcie_link_gen_current": _to_int(raw["pcie.link.gen.current"], "pcie.link.gen.current", line),
        "pcie_link_gen_max": _to_int(raw["pcie.link.gen.max"], "pcie.link.gen.max", line),
        "pcie_link_width_current": _to_int(raw["pcie.link.width.current"], "pcie.link.width.current", line),
        "pcie_link_width_max": _to_int(raw["pcie.link.width.max"], "pcie.link.width.max", line),
        "persistence_mode": _to_bool(raw["persistence_mode"], "persistence_mode", line),
        "mig_mode": _to_mode(raw["mig.mode.current"], "mig.mode.current", line),
    }


def _split_cells(line, header):
    if header:
        # Affinity column names contain spaces; protect them before splitting.
        for name in TOPO_AFFINITY_COLUMNS:
            line = line.replace(name, name.replace(" ", "\0"))
        return [cell.replace("\0", " ") for cell in line.split()]
    # nvidia-smi pads with extra tabs; empty cells carry no data.
    return [cell.strip() for cell in re.split(r"\t" if "\t" in line else r"\s+", line) if cell.strip()]


def _parse_int_or_none(value):
    value = na_to_none(value)
    if value is None or not re.match(r"^\d+$", value):
        return None
    return int(value)


def nvlink_groups(matrix, gpu_indices):
    """Connected components of GPUs joined by ``NV#`` entries.

    Every GPU in ``gpu_indices`` appears in exactly one group; a GPU without
    NVLink is a singleton group. Groups are sorted by their lowest index.
    """
    parent = {i: i for i in gpu_indices}

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for row_label, row in matrix.items():
        row_match = _GPU_LABEL_RE.match(row_label)
        if not row_match or int(row_match.group(1)) not in parent:
            continue
        for col_label, value in row.items():
            col_match = _GPU_LABEL_RE.match(col_label)
            if col_match and int(col_match.group(1)) in parent and _NVLINK_RE.match(value):
                a, b = find(int(row_match.group(1))), find(int(col_match.group(1)))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups = {}
    for i in gpu_indices:
        groups.setdefault(find(i), []).append(i)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def _topo_error(number, line, problem, output):
    return NvidiaSmiParseError(
        f"malformed nvidia-smi topo -m output, line {number}: {problem}: {line!r}",
        output=output,
        line_number=number,
        line=line,
    )


def parse_topology(output):
    """Parse ``nvidia-smi topo -m``.

    Returns a dict:

    * ``devices``: column labels in order (``GPU0``..., ``NIC0``...).
    * ``matrix``: ``{row_label: {column_label: value}}`` as printed (``X``,
      ``NV18``, ``PIX``, ``PXB``, ``PHB``, ``NODE``, ``SYS``...).
    * ``gpus``: per GPU ``{index, cpu_affinity, numa_affinity, gpu_numa_id}``;
      ``numa_affinity``/``gpu_numa_id`` are ints or None (``N/A``).
    * ``nics``: ``{NIC label: device name}`` from the NIC Legend.
    * ``nvlink_groups``: see nvlink_groups(); singletons included.
    """
    detect_error(output)
    lines = [_ANSI_RE.sub("", line).rstrip("\r\n") for line in output.splitlines()]
    header_at = None
    for number, line in enumerate(lines):
        if "GPU0" in _split_cells(line, header=True):
            header_at = number
            break
    if header_at is None:
        raise NvidiaSmiParseError("malformed nvidia-smi topo -m output: no header line with GPU0", output=output)

    header = _split_cells(lines[header_at], header=True)
    affinity_cols = [h for h in header if h in TOPO_AFFINITY_COLUMNS or " " in h]
    devices = [h for h in header if h not in affinity_cols]

    matrix = {}
    gpus = []
    rest = lines[header_at + 1 :]
    for offset, line in enumerate(rest):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("Legend") or stripped.startswith("NIC Legend"):
            rest = rest[offset:]
            break
        cells = _split_cells(line, header=False)
        label, values = cells[0], cells[1:]
        number = header_at + offset + 2
        if label not in devices:
            raise _topo_error(number, line, "unknown row", output)
        if not len(devices) <= len(values) <= len(devices) + len(affinity_cols):
            raise _topo_error(number, line, f"expected {len(devices)} columns, got {len(values)}", output)
        matrix[label] = dict(zip(devices, values[: len(devices)], strict=False))
        gpu_match = _GPU_LABEL_RE.match(label)
        if gpu_match:
            extra = dict(zip(affinity_cols, values[len(devices) :], strict=False))
            gpus.append(
                {
                    "index": int(gpu_match.group(1)),
                    "cpu_affinity": na_to_none(extra.get("CPU Affinity")),
                    "numa_affinity": _parse_int_or_none(extra.get("NUMA Affinity")),
                    "gpu_numa_id": _parse_int_or_none(extra.get("GPU NUMA ID")),
                }
            )
    else:
        rest = []

    nics = {}
    for line in rest:
        match = _NIC_LEGEND_RE.match(line)
        if match:
            nics[match.group(1)] = match.group(2)

    if not gpus:
        raise NvidiaSmiParseError("malformed nvidia-smi topo -m output: no GPU rows", output=output)
    return {
        "devices": devices,
        "matrix": matrix,
        "gpus": gpus,
        "nics": nics,
        "nvlink_groups": nvlink_groups(matrix, [g["index"] for g in gpus]),
    }


def _version_or_none(value):
    value = na_to_none(value)
    if value is None or not _VERSION_RE.match(value):
        return None
    return value


def parse_versions(output):
    """Driver and CUDA versions from ``nvidia-smi -q`` or the default ``nvidia-smi`` banner.

    Returns ``{"driver_version": str|None, "cuda_version": str|None}``. The CUDA
    version is the highest CUDA the driver supports; ``N/A``/``Not Found`` (no
    libcuda) become None.
    """
    detect_error(output)
    result = {"driver_version": None, "cuda_version": None}
    for key, label in (("driver_version", "Driver Version"), ("cuda_version", "CUDA Version")):
        # -q: "CUDA Version      : 12.8"; banner: "| ... CUDA Version: 12.8     |"
        match = re.search(rf"^\s*{label}\s*:\s*(.+?)\s*$", output, re.M)
        if not match:
            match = re.search(rf"{label}:\s*([^\s|]+)", output)
        if match:
            result[key] = _version_or_none(match.group(1))
    return result


def parse_cuda_version(output):
    """Shortcut for ``parse_versions(output)["cuda_version"]``."""
    return parse_versions(output)["cuda_version"]


# Values nvidia-smi prints in --query-compute-apps for what it may not show this caller.
_COMPUTE_APPS_NOT_AVAILABLE = frozenset(("Insufficient Permissions", "[Insufficient Permissions]"))
_NO_PROCESSES_RE = re.compile(r"^\s*No running (?:compute )?processes found\s*$", re.I)


def parse_query_compute_apps(output, fields=QUERY_COMPUTE_APPS_FIELDS):
    """Parse ``--query-compute-apps=<fields> --format=csv,noheader,nounits`` output.

    Returns one dict per line (a process with contexts on two GPUs gives two) with keys
    ``pid`` (int), ``gpu_uuid`` (str), ``used_memory_mib`` (int, or None for ``[N/A]``)
    and ``process_name`` (str or None); ``fields`` must contain pid and gpu_uuid, and
    every field other than process_name/name must come before it. Empty output and
    ``No running processes found`` give ``[]``. Raises NvidiaSmiCommandError for known
    error text, NvidiaSmiParseError for anything else that does not fit.
    """
    detect_error(output)
    fields = tuple(fields)
    names = [f for f in fields if f in ("process_name", "name")]
    if names and fields[-1] != names[0]:
        raise ValueError("process_name must be the last --query-compute-apps field")
    apps = []
    for number, text in enumerate(output.splitlines(), 1):
        if not text.strip() or _NO_PROCESSES_RE.match(text):
            continue
        line = _Line(number, text, output, query="--query-compute-apps")
        # Only the trailing process name may contain the separator.
        values = [v.strip() for v in text.split(",", len(fields) - 1 if names else -1)]
        if len(values) != len(fields):
            raise line.error(f"expected {len(fields)} fields, got {len(values)}")
        raw = dict(zip(fields, values, strict=True))
        apps.append(_convert_app(raw, line))
    return apps


def _convert_app(raw, line):
    pid = _to_int(raw.get("pid"), "pid", line)
    if pid is None or pid <= 0:
        raise line.error("field pid: missing")
    uuid = na_to_none(raw.get("gpu_uuid"))
    if uuid is None:
        raise line.error("field gpu_uuid: missing")
    memory_field = "used_gpu_memory" if "used_gpu_memory" in raw else "used_memory"
    memory = raw.get(memory_field)
    name = raw.get("process_name", raw.get("name"))
    if name is not None and name.strip() in _COMPUTE_APPS_NOT_AVAILABLE:
        name = None
    if memory is not None and memory.strip() in _COMPUTE_APPS_NOT_AVAILABLE:
        memory = None
    return {
        "pid": pid,
        "gpu_uuid": uuid,
        "used_memory_mib": _to_int(memory, memory_field, line, "MiB"),
        "process_name": na_to_none(name),
    }


def gpu_index_by_uuid(gpus):
    """Map each GPU's UUID (lower case) to its index, from parse_query_gpu() output."""
    return {g["uuid"].lower(): g["index"] for g in gpus if g.get("uuid")}
