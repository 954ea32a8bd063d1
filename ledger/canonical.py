"""Canonical JSON and digests: sorted keys, no insignificant whitespace, UTF-8.

The definition lives in the Django-free `trust` library (signatures need it too); the ledger uses
the same one so that every digest in the system means the same thing.
"""

import hashlib
from typing import Any

from trust.canonical import canonical_json

__all__ = ["canonical_json", "digest", "sha256_hex"]


def sha256_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """The sha256 of a value's canonical JSON."""
    return sha256_hex(canonical_json(value))
