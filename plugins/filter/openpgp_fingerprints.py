# Copyright (c) gpubox.llm contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Fingerprints of the primary keys in an OpenPGP public key file, without gpg on the target."""

from __future__ import annotations

import base64
import binascii
import hashlib

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_bytes, to_text

_ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"
_PUBLIC_KEY = 6  # RFC 9580, section 5.5.1.1: Public-Key Packet (Tag 6); subkeys are Tag 14


def _dearmor(text):
    """The binary packets of every ASCII-armored public key block in ``text``."""
    out = b""
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    found = False
    while i < len(lines):
        if lines[i].strip() != _ARMOR_BEGIN:
            i += 1
            continue
        found = True
        i += 1
        # Armor headers ("Version: ...", "Comment: ...") end at the first empty line.
        while i < len(lines) and lines[i].strip():
            if ":" not in lines[i]:
                break
            i += 1
        body = []
        while i < len(lines) and lines[i].strip() != _ARMOR_END:
            line = lines[i].strip()
            # "=XXXX" is the CRC-24 checksum line; base64 data never starts with "=".
            if line and not line.startswith("="):
                body.append(line)
            i += 1
        if i == len(lines):
            raise AnsibleFilterError("openpgp_fingerprints: armored key block without an END line")
        try:
            out += base64.b64decode("".join(body), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AnsibleFilterError(f"openpgp_fingerprints: bad base64 in the armored key: {exc}") from exc
    if not found:
        raise AnsibleFilterError(f"openpgp_fingerprints: no '{_ARMOR_BEGIN}' found")
    return out


def _packets(data):
    """(tag, body) of each OpenPGP packet (RFC 9580, section 4.2: old and new packet headers)."""
    pos = 0
    while pos < len(data):
        header = data[pos]
        if not header & 0x80:
            raise AnsibleFilterError(f"openpgp_fingerprints: not an OpenPGP packet at offset {pos}")
        if header & 0x40:  # new format
            tag = header & 0x3F
            first = data[pos + 1]
            if first < 192:
                length, pos = first, pos + 2
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 2] + 192, pos + 3
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 2 : pos + 6], "big"), pos + 6
            else:
                raise AnsibleFilterError("openpgp_fingerprints: partial body lengths do not occur in key files")
        else:  # old format
            tag = (header >> 2) & 0x0F
            kind = header & 0x03
            if kind == 3:
                length, pos = len(data) - pos - 1, pos + 1
            else:
                size = (1, 2, 4)[kind]
                length, pos = int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size
        body = data[pos : pos + length]
        if len(body) != length:
            raise AnsibleFilterError("openpgp_fingerprints: truncated OpenPGP packet")
        yield tag, body
        pos += length


def _fingerprint(body):
    """RFC 9580, section 5.5.4: v4 is SHA-1 over 0x99, a 2-octet length and the body; v6 is SHA-256 over 0x9B and a
    4-octet length (v5, the LibrePGP form, uses 0x9A)."""
    version = body[0] if body else None
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise AnsibleFilterError(f"openpgp_fingerprints: unsupported public key version {version}")


def openpgp_fingerprints(data, encoding="text"):
    """Fingerprints (upper-case hex, no spaces) of the primary keys in a public key file."""
    if encoding not in ("text", "base64"):
        raise AnsibleFilterError(f"openpgp_fingerprints: encoding must be 'text' or 'base64', got {encoding!r}")
    if not isinstance(data, (str, bytes)):
        raise AnsibleFilterError(f"openpgp_fingerprints: expected a string, got {type(data).__name__}")
    if encoding == "base64":
        try:
            raw = base64.b64decode(to_bytes(data), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AnsibleFilterError(f"openpgp_fingerprints: input is not base64: {exc}") from exc
    else:
        raw = to_bytes(data)
    if _ARMOR_BEGIN.encode() in raw:
        raw = _dearmor(to_text(raw, errors="surrogate_or_strict"))
    try:
        return [_fingerprint(body) for tag, body in _packets(raw) if tag == _PUBLIC_KEY]
    except IndexError as exc:
        raise AnsibleFilterError("openpgp_fingerprints: truncated OpenPGP packet header") from exc


class FilterModule:
    def filters(self):
        return {"openpgp_fingerprints": openpgp_fingerprints}
