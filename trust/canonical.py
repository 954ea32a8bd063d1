"""Canonical JSON (sorted keys, no insignificant whitespace, UTF-8) and its digest: the one definition.

Every digest and signature in SafeShrink is over these bytes: ledger events and checkpoints
(`ledger.canonical` re-exports this module), DSSE payloads, export bundles, suite contents, the
compression engine's recipe files, manifests and data digests. It lives in `trust`, the Django-free
library at the bottom of the layers, so that the engines may import it too (see ARCHITECTURE.md).

NaN and infinities are refused (``ValueError``): they are not JSON, and nothing the code digests holds
a float that could be one (`tests/trust/test_canonical.py` pins the bytes of every such caller).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "canonical_bytes", "sha256_hex", "digest"]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_bytes(value: Any) -> bytes:
    return canonical_json(value).encode("utf-8")


def sha256_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """The sha256 (hex) of a value's canonical JSON."""
    return sha256_hex(canonical_bytes(value))
