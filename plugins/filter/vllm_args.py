# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

# Documentation: vllm_args.yml and systemd_exec_args.yml (one sidecar per filter).
import json
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\Z")
_SAFE_WORD_RE = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+\Z")
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list(value):
    return isinstance(value, (list, tuple))


def _type_name(value):
    return type(value).__name__


def _option(key):
    if not isinstance(key, str):
        raise AnsibleFilterError(f"vllm_args: option names must be strings, got {_type_name(key)} {key!r}")
    name = key.removeprefix("--")
    if not _NAME_RE.match(name):
        raise AnsibleFilterError(
            f"vllm_args: invalid option name {key!r}: use letters, digits, '_', '-' and '.' only, "
            "like max_model_len or max-model-len"
        )
    head, dot, tail = name.partition(".")
    return "--" + head.replace("_", "-") + dot + tail


def _scalar(option, value, where):
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(value)
    raise AnsibleFilterError(
        f"vllm_args: {where} of {option} must be a string or a number, got {_type_name(value)} {value!r}"
    )


def _plain(value, option):
    """Deep copy into JSON-ready plain types, naming the option on anything else."""
    if value is None or isinstance(value, (str, bool)) or _is_number(value):
        return value
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AnsibleFilterError(
                    f"vllm_args: value of {option} has a key that is not a string: {_type_name(key)} {key!r}"
                )
            result[key] = _plain(item, option)
        return result
    if _is_list(value):
        return [_plain(item, option) for item in value]
    raise AnsibleFilterError(
        f"vllm_args: value of {option} holds a {_type_name(value)}, which cannot be written as JSON: {value!r}"
    )


def vllm_args(options):
    """Dictionary of vllm serve options -> list of argv words."""
    if not isinstance(options, Mapping):
        raise AnsibleFilterError(f"vllm_args: expects a dictionary of options, got {_type_name(options)}")
    args = []
    seen = {}
    for key, value in options.items():
        option = _option(key)
        if option in seen:
            raise AnsibleFilterError(f"vllm_args: keys {seen[option]!r} and {key!r} both give {option}")
        seen[option] = key
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                args.append(option)
            else:
                args.append("--no-" + option[2:])
        elif isinstance(value, Mapping):
            args.extend([option, json.dumps(_plain(value, option), separators=(",", ":"))])
        elif _is_list(value):
            if value:
                args.append(option)
                args.extend(_scalar(option, item, "list item") for item in value)
        else:
            word = _scalar(option, value, "value")
            if word.startswith("-"):
                args.append(option + "=" + word)
            else:
                args.extend([option, word])
    return args


def _systemd_word(arg):
    if isinstance(arg, str):
        word = arg
    elif _is_number(arg):
        word = str(arg)
    else:
        raise AnsibleFilterError(f"systemd_exec_args: items must be strings or numbers, got {_type_name(arg)} {arg!r}")
    word = word.replace("%", "%%").replace("$", "$$")
    if _SAFE_WORD_RE.match(word):
        return word
    out = []
    for char in word:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def systemd_exec_args(args):
    """List of argv words -> one string for a systemd ExecStart= line."""
    if isinstance(args, (str, bytes)) or not _is_list(args):
        raise AnsibleFilterError(f"systemd_exec_args: expects a list of arguments, got {_type_name(args)}")
    return " ".join(_systemd_word(arg) for arg in args)


class FilterModule:
    """gpubox.llm command-line filters."""

    def filters(self):
        return {
            "vllm_args": vllm_args,
            "systemd_exec_args": systemd_exec_args,
        }
