"""Make ``ansible_collections.gpubox.llm`` importable from a plain checkout."""

from __future__ import annotations

import importlib.util
import os
import sys

_COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "collections"))


def _importable():
    try:
        return importlib.util.find_spec("ansible_collections.gpubox.llm") is not None
    except ImportError:
        return False


# Under ansible-test the collection is already on the path; from a checkout, use the collections/ link.
if not _importable() and os.path.isdir(os.path.join(_COLLECTIONS, "ansible_collections", "gpubox", "llm")):
    sys.path.insert(0, _COLLECTIONS)
